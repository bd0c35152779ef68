"""SynthHerd: patterned "individuals" photographed under known homographies, for re-identification.

Each individual has its own coat: a random field of spots or of wavy stripes on
a canonical flank texture (`TEX` x `TEX` texels inside an elliptical body). Each
photo maps that texture into the image by a random homography, with random
lighting, background and sometimes an occluding bar. Because the homography
``H_i`` (texture -> image i) is stored, the true correspondence between any two
photos of one individual is known: ``H_j @ inv(H_i)`` maps pixels of photo i to
pixels of photo j (see `SynthHerd.true_homography`).

Individuals of the ``train`` and ``test`` splits are disjoint, as in re-ID.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Literal

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..errors import InputError
from . import _draw as D
from ._base import UInt8ImageDataset
from .cache import cached

__all__ = ["SynthHerd", "homography_from_points", "apply_homography", "TEX"]

TEX = 96  # side of the canonical texture, texels


def homography_from_points(src: torch.Tensor, dst: torch.Tensor) -> torch.Tensor:
    """The 3x3 homography mapping 4+ points ``src`` `[n, 2]` onto ``dst`` `[n, 2]` (DLT, float64)."""
    src, dst = src.double(), dst.double()
    n = src.shape[0]
    if n < 4:
        raise InputError("a homography needs at least 4 point pairs")
    x, y, u, v = src[:, 0], src[:, 1], dst[:, 0], dst[:, 1]
    z, o = torch.zeros(n, dtype=torch.float64), torch.ones(n, dtype=torch.float64)
    a = torch.cat([
        torch.stack([x, y, o, z, z, z, -u * x, -u * y, -u], 1),
        torch.stack([z, z, z, x, y, o, -v * x, -v * y, -v], 1),
    ])
    h = torch.linalg.svd(a).Vh[-1]
    H = h.reshape(3, 3)
    return H / H[2, 2]


def apply_homography(H: torch.Tensor, pts: torch.Tensor) -> torch.Tensor:
    """Map points `[n, 2]` by homography `[3, 3]`; returns `[n, 2]`."""
    p = torch.cat([pts.to(H.dtype), torch.ones(pts.shape[0], 1, dtype=H.dtype, device=pts.device)], 1) @ H.T
    return p[:, :2] / p[:, 2:3]


_PALETTE = torch.tensor([[0.85, 0.72, 0.5], [0.75, 0.75, 0.72], [0.6, 0.45, 0.3]])


def _coat(gen: torch.Generator) -> torch.Tensor:
    """An individual's texture `[4, TEX, TEX]`: RGB + body mask (ellipse)."""
    yy, xx = torch.meshgrid(torch.arange(TEX) + 0.5, torch.arange(TEX) + 0.5, indexing="ij")
    # few coat colours, so identity lies in the pattern, not the colour
    base = _PALETTE[int(torch.randint(len(_PALETTE), (1,), generator=gen))] + (torch.rand(3, generator=gen) - 0.5) * 0.08
    mark = base * (0.15 + 0.2 * float(torch.rand(1, generator=gen)))
    tex = base[:, None, None].expand(3, TEX, TEX).clone()
    if bool(torch.rand(1, generator=gen) < 0.5):  # spots of random size
        n = 25 + int(torch.randint(25, (1,), generator=gen))
        c = torch.rand(n, 2, generator=gen) * TEX
        r = 2.5 + torch.rand(n, generator=gen) * 4.5
        d = ((xx[None] - c[:, 0, None, None]) ** 2 + (yy[None] - c[:, 1, None, None]) ** 2) < (r[:, None, None] ** 2)
        D.paint(tex, d.any(0), mark)
    else:  # wavy stripes with random frequency and phase
        f = 0.25 + 0.2 * float(torch.rand(1, generator=gen))
        amp, ph = 3 + 6 * float(torch.rand(1, generator=gen)), 6.28 * float(torch.rand(1, generator=gen))
        wav = torch.sin(xx * f + amp * torch.sin(yy * 0.08 + ph) + 0.6 * D.smooth_noise(gen, 1, TEX, 5)[0] * 6)
        D.paint(tex, wav > 0.3, mark)
    body = ((xx - TEX / 2) / (TEX / 2)) ** 2 + ((yy - TEX / 2) / (TEX / 2.6)) ** 2 <= 1.0
    return torch.cat([tex, body[None].float()])


def _random_homography(gen: torch.Generator, size: int) -> torch.Tensor:
    """Texture corners -> a random convex quad covering 45-80 % of the image side."""
    side = size * (0.55 + 0.3 * float(torch.rand(1, generator=gen)))
    cx, cy = size / 2 + (torch.rand(2, generator=gen) - 0.5) * (size - side) * 0.8
    ang = (float(torch.rand(1, generator=gen)) - 0.5) * 1.2
    c, s = torch.cos(torch.tensor(ang)), torch.sin(torch.tensor(ang))
    corners = torch.tensor([[-1.0, -1.0], [1.0, -1.0], [1.0, 1.0], [-1.0, 1.0]]) * side / 2
    corners = corners + (torch.rand(4, 2, generator=gen) - 0.5) * side * 0.25  # perspective jitter
    rot = torch.stack([torch.stack([c, -s]), torch.stack([s, c])])
    dst = corners @ rot.T + torch.stack([cx, cy])
    src = torch.tensor([[0.0, 0.0], [TEX, 0.0], [TEX, TEX], [0.0, TEX]])
    return homography_from_points(src, dst)


def render_photo(coat: torch.Tensor, H: torch.Tensor, gen: torch.Generator, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Photo `[3, size, size]` (float) of ``coat`` under homography ``H``, and its animal mask `[size, size]`."""
    coords = torch.arange(size, dtype=torch.float64) + 0.5
    py, px = torch.meshgrid(coords, coords, indexing="ij")
    tex_pts = apply_homography(torch.linalg.inv(H), torch.stack([px.flatten(), py.flatten()], 1)).float()
    grid = (tex_pts / TEX * 2 - 1).reshape(1, size, size, 2)
    samp = F.grid_sample(coat[None], grid, mode="bilinear", padding_mode="zeros", align_corners=False)[0]
    mask = samp[3] > 0.5
    bg = D.smooth_noise(gen, 3, size, 6) * 0.5 + torch.rand(3, generator=gen)[:, None, None] * 0.4
    img = torch.where(mask[None], samp[:3], bg)
    # lighting: gain and a linear gradient
    gain = 0.7 + 0.5 * float(torch.rand(1, generator=gen))
    gx, gy = (torch.rand(2, generator=gen) - 0.5) * 0.5
    ramp = 1 + gx * (px.float() / size - 0.5) + gy * (py.float() / size - 0.5)
    img = img * gain * ramp[None]
    visible = mask.clone()
    if bool(torch.rand(1, generator=gen) < 0.4):  # partial occlusion by a bar
        w = size * (0.12 + 0.1 * float(torch.rand(1, generator=gen)))
        x0 = float(torch.rand(1, generator=gen)) * (size - w)
        bar = (px.float() >= x0) & (px.float() < x0 + w)
        if bool(torch.rand(1, generator=gen) < 0.5):
            bar = bar.T
        D.paint(img, bar, torch.rand(3, generator=gen) * 0.3)
        visible &= ~bar
    return img.clamp(0, 1), visible


def _seed(seed: int, split: str, *idx: int) -> int:
    h = seed * 1_000_003 + {"train": 0, "test": 1}[split] * 9_999_991
    for i in idx:
        h = h * 31 + i * 2_654_435_761
    return h % (2**62)


@lru_cache(maxsize=8)
def _generate(split: str, seed: int, individuals: int, photos: int, size: int, progress: bool | None):
    """Images, visibility masks, homographies and labels, from the on-disk cache when a valid copy is there."""
    params = {"split": split, "seed": seed, "individuals": individuals, "photos": photos, "size": size}

    def make() -> dict[str, torch.Tensor | str]:
        images, visible, hs, labels = _render_all(split, seed, individuals, photos, size, progress)
        return {"images": images, "visible": visible, "homographies": hs, "labels": labels}

    p = cached("synthherd", params, make)
    return p["images"], p["visible"], p["homographies"], p["labels"]


def _render_all(split: str, seed: int, individuals: int, photos: int, size: int, progress: bool | None):
    n = individuals * photos
    images = torch.empty(n, 3, size, size, dtype=torch.uint8)
    visible = torch.empty(n, size, size, dtype=torch.bool)
    Hs = torch.empty(n, 3, 3, dtype=torch.float64)
    labels = torch.arange(individuals).repeat_interleave(photos)
    for ind in tqdm(range(individuals), desc=f"SynthHerd {split}", disable=(None if progress is None else not progress), leave=False):
        coat = _coat(torch.Generator().manual_seed(_seed(seed, split, ind)))
        for p in range(photos):
            i = ind * photos + p
            g = torch.Generator().manual_seed(_seed(seed, split, ind, p + 1))
            Hs[i] = _random_homography(g, size)
            img, visible[i] = render_photo(coat, Hs[i], g, size)
            images[i] = (img * 255).round().to(torch.uint8)
    return images, visible, Hs, labels


class SynthHerd(UInt8ImageDataset):
    """Re-identification data: several photos of each patterned individual.

    Items are ``(image, individual)``: image float `[3, size, size]` in [0, 1].

    Args:
        split: ``"train"`` or ``"test"`` (disjoint individuals).
        seed: data set seed.
        individuals: number of individuals.
        photos: photos per individual.
        size: image side in pixels.

    Attributes:
        images: uint8 `[N, 3, size, size]`.
        labels: long `[N]` individual ids.
        homographies: float64 `[N, 3, 3]`, texture -> image pixel coordinates.
        visible: bool `[N, size, size]`, pixels showing the (unoccluded) animal.
    """

    def __init__(self, split: Literal["train", "test"] = "train", *, seed: int = 0, individuals: int | None = None,
                 photos: int = 6, size: int = 112, progress: bool | None = None) -> None:
        if split not in ("train", "test"):
            raise InputError(f"split must be 'train' or 'test', got {split!r}")
        individuals = individuals if individuals is not None else (80 if split == "train" else 40)
        if individuals < 1 or photos < 2:
            raise InputError(f"need individuals >= 1 and photos >= 2, got {individuals}, {photos}")
        if size < 32:
            raise InputError(f"size must be >= 32, got {size}")
        self.split, self.seed, self.size, self.photos = split, seed, size, photos
        self.images, self.visible, self.homographies, self.labels = _generate(split, seed, individuals, photos, size, progress)


    def true_homography(self, i: int, j: int) -> torch.Tensor:
        """float64 `[3, 3]` mapping pixel coordinates of photo ``i`` to photo ``j`` (same individual)."""
        if int(self.labels[i]) != int(self.labels[j]):
            raise InputError(f"photos {i} and {j} show different individuals; no true homography exists")
        return self.homographies[j] @ torch.linalg.inv(self.homographies[i])
