"""Keypoint transfer through a CHM correlation `[B, side^2 (source cells), side^2 (target cells)]`.

Follows the authors' code: coordinates are normalised to [-1, 1] with cell i of a
``side`` grid centred at ``-1 + 2 i / (side - 1)``. For each source cell, the target row
is weighted by a Gaussian (``sigma`` cells) around its argmax, soft-maxed (T = 1) and
soft-argmaxed to a point. A keypoint's prediction is the average of the source cells'
predictions weighted by ``max(0, radius - distance)``, renormalised (the nearest cell
alone if no cell is within ``radius``). Depends on torch only.
"""
from __future__ import annotations

import torch

from xcorr_core.errors import InputError

__all__ = ["cell_centres", "soft_argmax_points", "attention_weights", "transfer_points", "default_sigma", "default_radius",
           "normalise_points", "unnormalise_points"]


def default_sigma(side: int) -> float:
    """The authors' sigma = 17 cells on a 30-cell grid, scaled with the grid: 17 side / 30."""
    return 17.0 * side / 30.0


def default_radius(side: int) -> float:
    """The authors' radius 0.1 (normalised units) on a 30-cell grid, scaled with the cell spacing
    (29 / (side - 1)) so that a point always has cells within reach on coarse grids."""
    return 0.1 * 29.0 / max(side - 1, 1)


def cell_centres(side: int, device: torch.device | None = None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """`[side^2, 2]` normalised (x, y) of the cells, row-major (index y * side + x)."""
    g = torch.linspace(-1, 1, side, device=device, dtype=dtype)
    yy, xx = torch.meshgrid(g, g, indexing="ij")
    return torch.stack([xx.flatten(), yy.flatten()], 1)


def normalise_points(points: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Pixels (x, y) -> [-1, 1] with the authors' convention ``(p - S // 2) / (S // 2)``."""
    h, w = size
    half = points.new_tensor([w // 2, h // 2])
    return (points - half) / half


def unnormalise_points(points: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Inverse of `normalise_points`."""
    h, w = size
    half = points.new_tensor([w // 2, h // 2])
    return points * half + half


def soft_argmax_points(corr: torch.Tensor, side: int, sigma: float | None = None) -> torch.Tensor:
    """Predicted normalised (x, y) in the target for every source cell, `[B, side^2, 2]`."""
    b, ns, nt = corr.shape
    if ns != side * side or nt != side * side:
        raise InputError(f"correlation must be [B, {side * side}, {side * side}], got {list(corr.shape)}")
    sigma = default_sigma(side) if sigma is None else sigma
    centre = corr.argmax(dim=2)  # [B, Ns]
    cy, cx = (centre // side).to(corr.dtype), (centre % side).to(corr.dtype)
    idx = torch.arange(side, device=corr.device, dtype=corr.dtype)
    gy = torch.exp(-(idx[None, None, :] - cy[..., None]) ** 2 / (2 * sigma**2))  # [B, Ns, side]
    gx = torch.exp(-(idx[None, None, :] - cx[..., None]) ** 2 / (2 * sigma**2))
    gauss = (gy[..., :, None] * gx[..., None, :]).reshape(b, ns, nt)
    pdf = torch.softmax(gauss * corr, dim=2)
    return pdf @ cell_centres(side, corr.device, corr.dtype)


def attention_weights(points: torch.Tensor, side: int, radius: float | None = None) -> torch.Tensor:
    """`[B, P, side^2]` weights of the source cells for each normalised point `[B, P, 2]`."""
    radius = default_radius(side) if radius is None else radius
    cells = cell_centres(side, points.device, points.dtype)
    d = ((points[..., None, :] - cells) ** 2).sum(-1).add(1e-5).sqrt()  # [B, P, Ns]
    w = (radius - d).clamp_min(0)
    nearest = torch.nn.functional.one_hot(d.argmin(-1), side * side).to(w.dtype)
    s = w.sum(-1, keepdim=True)
    return torch.where(s > 0, w / s.clamp_min(1e-30), nearest)


def transfer_points(corr: torch.Tensor, points: torch.Tensor, side: int, *, sigma: float | None = None,
                    radius: float | None = None) -> torch.Tensor:
    """Transfer normalised source points `[B, P, 2]` to normalised target points `[B, P, 2]`."""
    per_cell = soft_argmax_points(corr, side, sigma)  # [B, Ns, 2]
    return attention_weights(points, side, radius) @ per_cell
