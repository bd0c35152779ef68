"""Vectorised rasterisation helpers for the synthetic data sets (torch, CPU or GPU).

Shapes are evaluated on coordinate grids `x, y` `[H, W]` and return boolean masks;
painting composites a colour where a mask is set. No Python loop over pixels.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def ellipse(x: torch.Tensor, y: torch.Tensor, cx: float, cy: float, ax: float, ay: float, angle: float = 0.0) -> torch.Tensor:
    c, s = math.cos(angle), math.sin(angle)
    u = (x - cx) * c + (y - cy) * s
    v = -(x - cx) * s + (y - cy) * c
    return (u / ax) ** 2 + (v / ay) ** 2 <= 1.0


def polygon(x: torch.Tensor, y: torch.Tensor, pts: list[tuple[float, float]]) -> torch.Tensor:
    """Convex polygon (vertices in either winding order)."""
    n = len(pts)
    signs = []
    for i in range(n):  # loop over the (few) edges, not over pixels
        (x0, y0), (x1, y1) = pts[i], pts[(i + 1) % n]
        signs.append((x1 - x0) * (y - y0) - (y1 - y0) * (x - x0))
    st = torch.stack(signs)
    return (st >= 0).all(0) | (st <= 0).all(0)


def segment(x: torch.Tensor, y: torch.Tensor, p0: tuple[float, float], p1: tuple[float, float], width: float) -> torch.Tensor:
    (x0, y0), (x1, y1) = p0, p1
    dx, dy = x1 - x0, y1 - y0
    L2 = dx * dx + dy * dy + 1e-9
    t = (((x - x0) * dx + (y - y0) * dy) / L2).clamp(0, 1)
    return (x - (x0 + t * dx)) ** 2 + (y - (y0 + t * dy)) ** 2 <= (width / 2) ** 2


def paint(img: torch.Tensor, mask: torch.Tensor, color: torch.Tensor | tuple[float, float, float]) -> None:
    """In place: img `[3, H, W]` takes ``color`` (`[3]` or `[3, H, W]`) where ``mask`` `[H, W]`."""
    col = torch.as_tensor(color, dtype=img.dtype, device=img.device)
    if col.ndim == 1:
        col = col[:, None, None].expand_as(img)
    img[:, mask] = col[:, mask]


def smooth_noise(gen: torch.Generator, channels: int, size: int, cells: int) -> torch.Tensor:
    """Low-frequency noise `[channels, size, size]` in [0, 1] (bicubic upsampled random grid)."""
    g = torch.rand(1, channels, cells, cells, generator=gen)
    return F.interpolate(g, size=(size, size), mode="bicubic", align_corners=False)[0].clamp(0, 1)


def downsample(img: torch.Tensor, factor: int) -> torch.Tensor:
    """Box-filter antialiasing of a supersampled `[3, H*f, W*f]` image."""
    return F.avg_pool2d(img[None], factor)[0] if factor > 1 else img


def outline(mask: torch.Tensor, width: int = 1) -> torch.Tensor:
    """Pixels on the boundary of ``mask`` `[H, W]` (dilation minus mask)."""
    m = mask[None, None].float()
    dil = F.max_pool2d(m, 2 * width + 1, stride=1, padding=width)
    ero = -F.max_pool2d(-m, 2 * width + 1, stride=1, padding=width)
    return (dil - ero)[0, 0] > 0
