"""The three CGC views and the batched crop/resize/flip that maps an "orig" map onto an "aug" view.

- training view: RandomResizedCrop(S) + horizontal flip of the source image (for the CE term);
- orig view: Resize(round(S * 256 / 224)) of the shorter side + CenterCrop(S);
- aug view: a resized crop of the orig view (RandomResizedCrop parameters, then a flip), whose
  box ``(i, j, h, w)`` in orig-view pixels and flip flag are returned with it.

`transform_maps` applies a box + flip to a batch of maps or images in one ``grid_sample`` call; it
equals the authors' per-image slice, bilinear resize (``align_corners=False``) and flip (tested).
The aug view is produced by the same function, so heatmaps and images go through one sampler.
Depends on torch and torchvision only.
"""
from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torchvision.transforms.v2 import functional as TF

from xcorr_core.errors import InputError
from xcorr_core.validation import check_tensor

__all__ = ["ViewsConfig", "CGCViews", "CGCBatch", "crop_params", "transform_maps", "orig_view", "make_views"]


class ViewsConfig(BaseModel):
    """Parameters of the three views (defaults: the authors' ImageNet recipe, scaled to ``size``)."""

    model_config = ConfigDict(extra="forbid")
    size: int = Field(224, ge=8, description="side S of every view")
    resize_ratio: float = Field(256 / 224, ge=1.0, description="orig view: shorter side resized to round(S * ratio), then centre crop S")
    scale: tuple[float, float] = Field((0.08, 1.0), description="RandomResizedCrop area fraction (training and aug views)")
    ratio: tuple[float, float] = Field((3 / 4, 4 / 3), description="RandomResizedCrop aspect ratio range")
    flip_p: float = Field(0.5, ge=0.0, le=1.0, description="probability of a horizontal flip (after the resized crop)")


def crop_params(height: int, width: int, scale: tuple[float, float], ratio: tuple[float, float], gen: torch.Generator) -> tuple[int, int, int, int]:
    """RandomResizedCrop's box ``(i, j, h, w)`` in an ``height x width`` image (torchvision's rule:
    10 tries at a random area and log-uniform aspect ratio, then the centre crop of the clamped ratio)."""
    area = height * width
    log_r = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * float(torch.empty(1).uniform_(scale[0], scale[1], generator=gen))
        aspect = math.exp(float(torch.empty(1).uniform_(log_r[0], log_r[1], generator=gen)))
        w = int(round(math.sqrt(target * aspect)))
        h = int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            i = int(torch.randint(0, height - h + 1, (1,), generator=gen))
            j = int(torch.randint(0, width - w + 1, (1,), generator=gen))
            return i, j, h, w
    in_ratio = width / height
    if in_ratio < min(ratio):
        w, h = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        h, w = height, int(round(height * max(ratio)))
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def transform_maps(maps: torch.Tensor, boxes: torch.Tensor, flips: torch.Tensor, size: int | tuple[int, int]) -> torch.Tensor:
    """Crop ``boxes`` out of ``maps``, resize each crop to ``size`` (bilinear) and flip where flagged.

    Args:
        maps: `[B, H, W]` or `[B, C, H, W]` maps or images (differentiable).
        boxes: `[B, 4]` crop boxes ``(i, j, h, w)`` in pixels of ``maps`` (row, column, height, width).
        flips: `[B]` bool, flip horizontally after the resize.
        size: output side (or ``(height, width)``).

    Returns:
        `[B, size, size]` (or `[B, C, size, size]`), equal to slicing ``[i:i+h, j:j+w]``, ``F.interpolate``
        (bilinear, ``align_corners=False``) and ``flip(-1)`` per image, in one ``grid_sample``.
    """
    check_tensor("maps", maps, floating=True, finite=True, non_empty=True)
    squeeze = maps.ndim == 3
    x = maps[:, None] if squeeze else maps
    if x.ndim != 4:
        raise InputError(f"maps must be [B, H, W] or [B, C, H, W], got {list(maps.shape)}")
    b, _, H, W = x.shape
    boxes = check_tensor("boxes", boxes, shape=(b, 4), finite=True)
    flips = check_tensor("flips", torch.as_tensor(flips), shape=(b,)).to(torch.bool)
    oh, ow = (size, size) if isinstance(size, int) else size
    bx = boxes.to(device=x.device, dtype=x.dtype)
    i, j, h, w = bx.unbind(1)
    if bool(((h < 1) | (w < 1) | (i < 0) | (j < 0) | (i + h > H) | (j + w > W)).any()):
        raise InputError(f"boxes (i, j, h, w) must lie inside the {H}x{W} maps")
    # source pixel of output pixel u: (u + 0.5) * extent / out - 0.5 in crop pixels, clamped to the
    # crop as F.interpolate clamps (never reads a neighbour outside the crop)
    u = (torch.arange(ow, device=x.device, dtype=x.dtype) + 0.5) / ow
    v = (torch.arange(oh, device=x.device, dtype=x.dtype) + 0.5) / oh
    sx = torch.minimum((u[None] * w[:, None] - 0.5).clamp_min(0), w[:, None] - 1) + j[:, None]  # [B, ow]
    sy = torch.minimum((v[None] * h[:, None] - 0.5).clamp_min(0), h[:, None] - 1) + i[:, None]  # [B, oh]
    sx = torch.where(flips.to(x.device)[:, None], sx.flip(1), sx)
    gx = (sx + 0.5) / W * 2 - 1
    gy = (sy + 0.5) / H * 2 - 1
    grid = torch.stack([gx[:, None, :].expand(b, oh, ow), gy[:, :, None].expand(b, oh, ow)], dim=-1)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return out[:, 0] if squeeze else out


def orig_view(image: torch.Tensor, size: int, resize_ratio: float = 256 / 224) -> torch.Tensor:
    """Resize the shorter side of ``image`` `[C, H, W]` to ``round(size * resize_ratio)``, centre crop ``size``."""
    side = int(round(size * resize_ratio))
    x = TF.resize(image, [side], antialias=True) if min(image.shape[-2:]) != side else image
    return TF.center_crop(x, [size, size])


def _train_view(image: torch.Tensor, c: ViewsConfig, gen: torch.Generator) -> torch.Tensor:
    """RandomResizedCrop(S) + flip of one image `[3, H, W]` (crop drawn first, then the flip)."""
    i, j, h, w = crop_params(image.shape[1], image.shape[2], c.scale, c.ratio, gen)
    out = TF.resized_crop(image, i, j, h, w, [c.size, c.size], antialias=True)
    return out.flip(-1) if float(torch.rand(1, generator=gen)) < c.flip_p else out


class CGCBatch(BaseModel):
    """Views of a batch: ``train``, ``orig``, ``aug`` `[B, 3, S, S]`, ``boxes`` `[B, 4]` (i, j, h, w in
    orig-view pixels) and ``flips`` `[B]` bool (the aug view's parameters)."""

    model_config = ConfigDict(arbitrary_types_allowed=True)
    train: torch.Tensor
    orig: torch.Tensor
    aug: torch.Tensor
    boxes: torch.Tensor
    flips: torch.Tensor


class CGCViews:
    """A data-loader transform: ``views(image)`` -> dict with ``train``, ``orig``, ``aug``, ``box``, ``flip``.

    ``image`` is a `[3, H, W]` tensor (float in [0, 1] or uint8, any size) or a PIL image. Use
    `CGCViews.collate` as the loader's ``collate_fn`` to get a `CGCBatch` (labels, if the dataset
    yields ``(image, label)``, are returned beside it).

    Example:
        >>> views = CGCViews(ViewsConfig(size=112), seed=0)
        >>> loader = DataLoader(ds, batch_size=32, collate_fn=views.collate)   # ds yields (image, label)
        >>> batch, labels = next(iter(loader))
    """

    def __init__(self, config: ViewsConfig | None = None, *, seed: int | None = None) -> None:
        self.config = config or ViewsConfig()
        self.gen = torch.Generator()
        if seed is not None:
            self.gen.manual_seed(seed)
        else:
            self.gen.seed()

    def _tensor(self, image: Any) -> torch.Tensor:
        x = image if isinstance(image, torch.Tensor) else TF.pil_to_tensor(image)
        if x.ndim != 3 or x.shape[0] not in (1, 3):
            raise InputError(f"image must be [3, H, W] (or a PIL image), got {list(x.shape)}")
        x = x.expand(3, -1, -1) if x.shape[0] == 1 else x
        return x.float() / 255 if x.dtype == torch.uint8 else x.float()

    def __call__(self, image: Any) -> dict[str, torch.Tensor]:
        c = self.config
        x = self._tensor(image)
        train = _train_view(x, c, self.gen)
        orig = orig_view(x, c.size, c.resize_ratio)
        box = torch.tensor(crop_params(c.size, c.size, c.scale, c.ratio, self.gen), dtype=torch.float32)
        flip = torch.tensor(float(torch.rand(1, generator=self.gen)) < c.flip_p)
        aug = transform_maps(orig[None], box[None], flip[None], c.size)[0]
        return {"train": train, "orig": orig, "aug": aug, "box": box, "flip": flip}

    def collate(self, items: list[Any]) -> tuple[CGCBatch, torch.Tensor | None]:
        """``collate_fn`` for ``(image, label)`` or bare-image datasets."""
        pairs = [it if isinstance(it, (tuple, list)) else (it, None) for it in items]
        views = [self(img) for img, _ in pairs]
        labels = None if pairs[0][1] is None else torch.as_tensor([int(lbl) for _, lbl in pairs])
        return CGCBatch(train=torch.stack([v["train"] for v in views]), orig=torch.stack([v["orig"] for v in views]),
                        aug=torch.stack([v["aug"] for v in views]), boxes=torch.stack([v["box"] for v in views]),
                        flips=torch.stack([v["flip"] for v in views])), labels


def make_views(images: torch.Tensor, config: ViewsConfig, gen: torch.Generator) -> CGCBatch:
    """Views of an in-memory batch ``images`` `[B, 3, H, W]` in [0, 1] (same rules as `CGCViews`;
    the aug views in one `transform_maps` call)."""
    check_tensor("images", images, ndim=4, floating=True, non_empty=True)
    c = config
    b, _, H, W = images.shape
    train = [_train_view(x, c, gen) for x in images]
    orig = torch.stack([orig_view(x, c.size, c.resize_ratio) for x in images]) if (H, W) != (c.size, c.size) or c.resize_ratio != 1.0 else images
    boxes = torch.tensor([crop_params(c.size, c.size, c.scale, c.ratio, gen) for _ in range(b)], dtype=torch.float32)
    flips = torch.rand(b, generator=gen) < c.flip_p
    aug = transform_maps(orig, boxes, flips, c.size)
    return CGCBatch(train=torch.stack(train), orig=orig, aug=aug, boxes=boxes, flips=flips)
