"""Correlation tensors for CHM: the multi-scale 6D cosine correlation, 4D bilinear resizing
and the mutual nearest-neighbour filter. Batched over pairs; depends on torch and the core's errors."""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from xcorr_core.errors import InputError

__all__ = ["scale_sides", "interpolate4d", "scale_features", "correlation6d", "correlation6d_from_scales", "mutual_nn_filter"]


def scale_sides(side: int, scales: Sequence[float]) -> list[int]:
    """Side of the resized feature map at each scale: ``round(side * sqrt(s))`` (15 -> 11, 15, 21)."""
    return [max(1, round(side * math.sqrt(s))) for s in scales]


def interpolate4d(corr: torch.Tensor, size: int) -> torch.Tensor:
    """Bilinear (align_corners=True) resize of `[B, h1, w1, h2, w2]` to `[B, size, size, size, size]`,
    over the source axes, then the target axes."""
    b, h1, w1, h2, w2 = corr.shape
    x = corr.reshape(b, h1, w1, h2 * w2).permute(0, 3, 1, 2)
    x = F.interpolate(x, (size, size), mode="bilinear", align_corners=True)  # [B, h2 w2, S, S]
    x = x.reshape(b, h2, w2, size * size).permute(0, 3, 1, 2)
    x = F.interpolate(x, (size, size), mode="bilinear", align_corners=True)  # [B, S S, S, S]
    return x.reshape(b, size, size, size, size)


def scale_features(x: torch.Tensor, scales: Sequence[float], convs: nn.ModuleList) -> list[torch.Tensor]:
    """Per scale, the unit channel vectors `[B, C', side^2]` of maps `[B, C, h, h]`: resized to
    ``scale_sides`` (bilinear, align_corners=True) and passed through that scale's conv. They
    depend on one image each, so a gallery's can be computed once and reused for every query."""
    h = x.shape[-1]
    out = []
    for side, conv in zip(scale_sides(h, scales), convs):
        y = F.interpolate(x, (side, side), mode="bilinear", align_corners=True) if side != h else x
        out.append(F.normalize(conv(y).flatten(2), dim=1, eps=1e-12))
    return out


def correlation6d_from_scales(fsrc: Sequence[torch.Tensor], ftrg: Sequence[torch.Tensor], h: int) -> torch.Tensor:
    """`correlation6d` from `scale_features` of both sides (``fsrc`` batch 1 or B)."""
    sides = [int(round(f.shape[-1] ** 0.5)) for f in fsrc]
    b, n = ftrg[0].shape[0], len(fsrc)
    out = []
    for fs, ss in zip(fsrc, sides):
        for ft, st in zip(ftrg, sides):
            c = (fs.transpose(1, 2) @ ft).view(b, ss, ss, st, st)
            out.append(interpolate4d(c, h) if (ss, st) != (h, h) else c)
    return torch.stack(out, 1).view(b, n, n, h, h, h, h).clamp_min(0)


def correlation6d(src: torch.Tensor, trg: torch.Tensor, scales: Sequence[float], convs: nn.ModuleList,
                  trg_scales: Sequence[torch.Tensor] | None = None) -> torch.Tensor:
    """Multi-scale cosine correlation `[B, S, S, h, w, h, w]` (S = len(scales)), clamped at 0.

    Each map `[B, C, h, w]` is resized to ``scale_sides`` (bilinear, align_corners=True) and
    passed through that scale's conv (shared by source and target); every (source scale,
    target scale) pair gives a cosine 4D correlation, resized back to h^4. ``src`` may have
    batch 1 against a ``trg`` batch of B (one query against many candidates): its scale
    features are then computed once. ``trg_scales``: the targets' `scale_features` computed
    beforehand (e.g. once per gallery image); ``trg`` then only gives the shapes.
    """
    bs, _, h, w = src.shape
    b = trg.shape[0]
    if h != w:
        raise InputError(f"CHM needs square feature maps, got {h} x {w}: give images whose feature grid is square "
                         "(e.g. resize to a square size) or crop the maps")
    if bs not in (1, b):
        raise InputError(f"src batch {bs} must be 1 or the trg batch {b}")
    ftrg = scale_features(trg, scales, convs) if trg_scales is None else list(trg_scales)
    return correlation6d_from_scales(scale_features(src, scales, convs), ftrg, h)


def mutual_nn_filter(corr: torch.Tensor, eps: float = 1e-30) -> torch.Tensor:
    """Soft mutual nearest-neighbour filter of `[B, Ns, Nt]`: C * (C / rowmax) * (C / colmax),
    maxima of 0 replaced by ``eps``."""
    rmax = corr.amax(dim=2, keepdim=True)
    cmax = corr.amax(dim=1, keepdim=True)
    rmax = torch.where(rmax == 0, torch.full_like(rmax, eps), rmax)
    cmax = torch.where(cmax == 0, torch.full_like(cmax, eps), cmax)
    return corr * (corr / rmax) * (corr / cmax)
