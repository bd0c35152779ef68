"""Attribution-quality measures for any pixel map: Content Heatmap, insertion / deletion AUC, consistency.

Plain functions over tensors (the Metric components in `metrics.py` wrap them):

- `content_heatmap`: percentage of a map's mass inside ground-truth boxes (TorchRay's "energy inside
  the box" of the CGC authors): negative values clipped, map normalised to sum 1, pixel (x, y)
  weighted by the fraction of it the box covers (integer boxes: in or out). Maps of zero mass are
  reported as NaN and left out of the mean, as the authors skip them.
- `insertion_deletion`: the RISE protocol. Pixels in descending map order (stable sort); ``steps``
  steps of ``ceil(H*W/steps)`` pixels; insertion starts from the blurred image and copies in clean
  pixels, deletion starts clean and copies in blurred ones; the score is the softmax probability of
  the clean image's top-1 class; AUC by the trapezoid rule on [0, 1]. All ``B x (steps + 1)``
  images go through the model in chunks of ``batch_size``; no forward per step per image.
- `consistency`: cosine between a map of the aug view and the orig view's map moved by the same
  crop/flip (the quantity CGC trains).
Depends on torch and the core (validation); no numpy.
"""
from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from xcorr_core.errors import InputError
from xcorr_core.models import check_model_images, takes_unit_images
from xcorr_core.validation import check_tensor

from .heatmaps import upsample
from .views import transform_maps

__all__ = ["content_heatmap", "box_coverage", "rise_blur_kernel", "blur", "insertion_deletion", "curve_auc", "consistency",
           "eval_mode"]


def _maps(name: str, maps: object, b: int | None = None) -> torch.Tensor:
    m = check_tensor(name, maps, ndim=3, floating=True, non_empty=True)
    if b is not None and m.shape[0] != b:
        raise InputError(f"{name} must have {b} maps (one per image), got {m.shape[0]}")
    if not bool(torch.isfinite(m).all()):
        raise InputError(f"{name} contain NaN or inf")
    return m


def box_coverage(boxes: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """`[B, H, W]` fraction of each pixel inside box ``(x0, y0, x1, y1)`` (pixel x spans [x, x + 1))."""
    x = torch.arange(width, dtype=boxes.dtype, device=boxes.device)
    y = torch.arange(height, dtype=boxes.dtype, device=boxes.device)
    x0, y0, x1, y1 = boxes.unbind(1)
    wx = (torch.minimum(x[None] + 1, x1[:, None]) - torch.maximum(x[None], x0[:, None])).clamp(0, 1)
    wy = (torch.minimum(y[None] + 1, y1[:, None]) - torch.maximum(y[None], y0[:, None])).clamp(0, 1)
    return wy[:, :, None] * wx[:, None, :]


def content_heatmap(maps: torch.Tensor, boxes: torch.Tensor | list[torch.Tensor]) -> torch.Tensor:
    """Per-map percentage of mass inside the boxes `[B]` (NaN for a map of zero mass).

    Args:
        maps: `[B, H, W]` attribution maps at the boxes' pixel resolution; negatives are clipped to 0.
        boxes: `[B, 4]` ``(x0, y0, x1, y1)`` pixels (x1, y1 exclusive), or a list of `[n_b, 4]` per map
            (the union of a map's boxes counts, e.g. several ground-truth objects).
    """
    m = _maps("maps", maps)
    b, h, w = m.shape
    per_map = [torch.as_tensor(bx, dtype=torch.float64).reshape(-1, 4) for bx in boxes] if isinstance(boxes, list) else None
    if per_map is None:
        bx = check_tensor("boxes", boxes, shape=(b, 4), finite=True)
        per_map = [row[None].double() for row in bx]
    if len(per_map) != b:
        raise InputError(f"boxes must give one box (or list of boxes) per map: {b} maps, {len(per_map)} entries")
    for k, bx in enumerate(per_map):
        if not bool(torch.isfinite(bx).all()):
            raise InputError(f"boxes[{k}] = {bx.tolist()} contains NaN or inf")
        if bx.shape[0] == 0:
            raise InputError(f"boxes[{k}] holds no box: give each map at least one (x0, y0, x1, y1) box")
        x0, y0, x1, y1 = bx.unbind(1)
        if bool(((x0 < 0) | (y0 < 0) | (x1 > w) | (y1 > h) | (x1 <= x0) | (y1 <= y0)).any()):
            raise InputError(f"boxes[{k}] = {bx.tolist()} must be non-empty (x0 < x1, y0 < y1) and inside the {w}x{h} map")
    inside = torch.stack([box_coverage(bx, h, w).amax(0) for bx in per_map]).to(m.device)  # union of a map's boxes
    pos = m.double().clamp_min(0)
    mass = pos.sum(dim=(1, 2))
    frac = (pos * inside).sum(dim=(1, 2)) / mass.clamp_min(1e-300)
    return torch.where(mass > 0, 100 * frac, torch.full_like(frac, math.nan)).float()


def rise_blur_kernel(size: int = 11, sigma: float = 5.0, truncate: float = 4.0) -> torch.Tensor:
    """The RISE substrate kernel `[size, size]`: scipy's ``gaussian_filter`` of a centred delta
    (``mode="reflect"``), i.e. a Gaussian of radius ``int(truncate * sigma + 0.5)`` folded back into the
    window by half-sample reflection. Nearly flat for (11, 5); sums to 1."""
    radius = int(truncate * sigma + 0.5)
    off = torch.arange(-radius, radius + 1, dtype=torch.float64)
    g = torch.exp(-0.5 * (off / sigma) ** 2)
    g = g / g.sum()
    centre = size // 2
    k1 = torch.zeros(size, dtype=torch.float64)
    # out[i] = sum_o g[o] * delta[reflect(i + o)], reflect with period 2 * size (d c b a | a b c d | d c b a)
    for i in range(size):
        idx = (torch.arange(i - radius, i + radius + 1) % (2 * size))
        idx = torch.where(idx >= size, 2 * size - 1 - idx, idx)
        k1[i] = g[idx == centre].sum()
    return torch.outer(k1, k1).float()


def blur(images: torch.Tensor, kernel: torch.Tensor | None = None, padding: Literal["zeros", "reflect"] = "zeros") -> torch.Tensor:
    """Blur every channel of ``images`` `[B, C, H, W]` with ``kernel`` (default: `rise_blur_kernel`)."""
    check_tensor("images", images, ndim=4, floating=True, finite=True, non_empty=True)
    if kernel is not None:
        check_tensor("kernel", kernel, ndim=2, floating=True, finite=True, non_empty=True)
    k = (kernel if kernel is not None else rise_blur_kernel()).to(images)
    c, p = images.shape[1], k.shape[-1] // 2
    weight = k[None, None].expand(c, 1, -1, -1)
    if padding == "reflect":
        return F.conv2d(F.pad(images, (p, p, p, p), mode="reflect"), weight, groups=c)
    return F.conv2d(images, weight, padding=p, groups=c)


@contextmanager
def eval_mode(model: nn.Module, enabled: bool = True) -> Iterator[nn.Module]:
    """Put ``model`` in eval mode for the block and restore every module's own flag afterwards."""
    flags = {m: m.training for m in model.modules()}
    try:
        if enabled:
            model.eval()
        yield model
    finally:
        for m, f in flags.items():
            m.training = f


def curve_auc(curves: torch.Tensor) -> torch.Tensor:
    """Trapezoid AUC on [0, 1] of curves `[B, n]` sampled at n equally spaced points: ``(sum s - s_0/2 - s_last/2) / (n - 1)``."""
    check_tensor("curves", curves, floating=True, finite=True, non_empty=True)
    n = curves.shape[-1]
    if n < 2:
        raise InputError(f"a curve needs at least 2 points, got {n}")
    return (curves.sum(-1) - curves[..., 0] / 2 - curves[..., -1] / 2) / (n - 1)


def _order_ranks(maps: torch.Tensor) -> torch.Tensor:
    """Rank of each pixel in descending map order (ties: lower flat index first) `[B, H*W]`."""
    flat = maps.flatten(1)
    order = torch.sort(flat, dim=1, descending=True, stable=True).indices
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(flat.shape[1], device=flat.device).expand_as(order))
    return ranks


@torch.no_grad()
def insertion_deletion(model: nn.Module, images: torch.Tensor, maps: torch.Tensor, *, mode: Literal["insertion", "deletion"] = "insertion",
                       steps: int = 28, substrate: torch.Tensor | None = None, batch_size: int = 8,
                       use_eval: bool = True) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """RISE insertion or deletion curves of many images in chunked batches.

    Args:
        model: a classifier returning logits `[B, K]`.
        images: `[B, C, H, W]` as the model takes them.
        maps: `[B, h, w]` attributions; resized bilinearly to ``(H, W)`` when smaller or larger.
        mode: ``"insertion"`` (blur -> clean) or ``"deletion"`` (clean -> blur).
        steps: number of steps (28 in the authors' code); ``ceil(H*W/steps)`` pixels each.
        substrate: `[B, C, H, W]` the image with nothing inserted; default: `blur` of ``images``.
        batch_size: images per forward pass (8 was fastest on a 2-core CPU: larger CPU batches are slower
            per image; raise it on a GPU).
        use_eval: run the model in eval mode (restored afterwards).

    Returns:
        ``(auc [B], curves [B, steps + 1], classes [B])``: the classes are the clean images' top-1. A constant
        map (all zero, say) ranks no pixel above another, so it has no insertion order: its AUC is NaN
        rather than a value that depends on the raster order.
    """
    x = check_tensor("images", images, ndim=4, floating=True, non_empty=True, finite=True)
    if takes_unit_images(model):  # the shipped models: RGB in [0, 1], as the pipeline checks them
        check_model_images(model, x)
    b, _, H, W = x.shape
    m = _maps("maps", maps, b)
    if mode not in ("insertion", "deletion"):
        raise InputError(f"mode must be 'insertion' or 'deletion', got {mode!r}")
    if steps < 1:
        raise InputError(f"steps must be >= 1, got {steps}")
    if batch_size < 1:
        raise InputError(f"batch_size must be >= 1, got {batch_size}")
    sub = blur(x) if substrate is None else check_tensor("substrate", substrate, shape=tuple(x.shape), floating=True)
    ranks = _order_ranks(upsample(m.to(x), (H, W)).float()).view(b, 1, H, W)
    per_step = math.ceil(H * W / steps)
    counts = torch.clamp(torch.arange(steps + 1, device=x.device) * per_step, max=H * W)
    start, end = (sub, x) if mode == "insertion" else (x, sub)
    with eval_mode(model, use_eval):
        classes = torch.cat([model(x[i:i + batch_size]).argmax(1) for i in range(0, b, batch_size)])
        pairs = torch.stack(torch.meshgrid(torch.arange(b), torch.arange(steps + 1), indexing="ij"), -1).view(-1, 2)
        scores = torch.empty(b * (steps + 1), device=x.device)
        for s in range(0, pairs.shape[0], batch_size):
            bi, ki = pairs[s:s + batch_size].unbind(1)
            bi, ki = bi.to(x.device), ki.to(x.device)
            moved = ranks[bi] < counts[ki].view(-1, 1, 1, 1)  # pixels already inserted / deleted
            batch = torch.where(moved, end[bi], start[bi])
            probs = model(batch).softmax(1)
            scores[s:s + batch.shape[0]] = probs.gather(1, classes[bi][:, None])[:, 0]
    curves = scores.view(b, steps + 1)
    flat = m.flatten(1)
    constant = (flat == flat[:, :1]).all(1).to(curves.device)
    auc = torch.where(constant, torch.full_like(curves[:, 0], math.nan), curve_auc(curves))
    return auc, curves, classes


def consistency(maps_aug: torch.Tensor, maps_orig: torch.Tensor, boxes: torch.Tensor, flips: torch.Tensor) -> torch.Tensor:
    """Cosine `[B]` between ``maps_aug`` `[B, S, S]` and ``maps_orig`` `[B, h, w]` (upsampled to the
    orig view's size S' if needed: pass maps at orig-view pixels) moved by the aug crop ``boxes`` `[B, 4]`
    ``(i, j, h, w)`` and ``flips`` `[B]`. NaN where either map is all zero."""
    a = _maps("maps_aug", maps_aug)
    o = _maps("maps_orig", maps_orig, a.shape[0])
    moved = transform_maps(o, boxes, flips, tuple(a.shape[-2:]))
    na, nm = a.flatten(1).norm(dim=1), moved.flatten(1).norm(dim=1)
    cos = (a.flatten(1) * moved.flatten(1)).sum(1) / (na * nm).clamp_min(1e-30)
    return torch.where((na > 0) & (nm > 0), cos, torch.full_like(cos, math.nan))
