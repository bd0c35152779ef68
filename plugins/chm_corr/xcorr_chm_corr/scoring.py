"""CHM-Corr scoring: pair each query cell with a candidate cell through CHM transfers, weigh the
pairs' cosine by a mask, and score the candidate (Taesiri, Nguyen et al., NeurIPS 2022).

* ``grid_points``: the query's grid points, one per embedding cell, row-major;
* ``paired_cells``: the candidate cell each query cell is paired with, from transferred
  points; ``authors_transpose=True`` reproduces the authors' code, which pairs cell (r, c)
  with the transfer of the point in cell (c, r) and reads the target as (x-cell, y-cell);
* ``cc_mask``: the cross-correlation map of the query against the candidate
  (q_m . mean(g), as EMD-Corr's weights), min-max normalised, cells >= threshold (0.55);
* ``keypoint_mask``: CHM-Corr+'s mask of the query cells holding chosen part keypoints;
* ``chm_corr_scores``: mean of the top L (5) of cosine x mask (cells that fail the mask
  count as zeros), or the mean over every cell (CHM-Corr+).

Batched over candidates (and queries); depends on torch and the core's checks.
"""
from __future__ import annotations

from typing import Literal

import torch

from xcorr_core.errors import InputError

__all__ = ["grid_points", "paired_cells", "cc_mask", "keypoint_mask", "paired_cosine", "chm_corr_scores"]


def grid_points(h: int, w: int, kind: Literal["centres", "authors"] = "centres", *, device: torch.device | None = None) -> torch.Tensor:
    """`[h w, 2]` normalised (x, y) points, row-major (point r * w + c lies in cell (r, c)).

    ``centres``: cell centres ``2 (k + 0.5) / n - 1``. ``authors``: their fixed grid
    ``linspace(18, 222, 7)`` of a 240 px image, i.e. ``linspace(-0.85, 0.85, n)``.
    """
    if kind == "centres":
        xs = (torch.arange(w, device=device) + 0.5) * 2 / w - 1
        ys = (torch.arange(h, device=device) + 0.5) * 2 / h - 1
    elif kind == "authors":
        xs = torch.linspace(-0.85, 0.85, w, device=device)
        ys = torch.linspace(-0.85, 0.85, h, device=device)
    else:
        raise InputError(f"grid must be 'centres' or 'authors', got {kind!r}")
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([xx.flatten(), yy.flatten()], 1)


def paired_cells(transferred: torch.Tensor, h: int, w: int, *, authors_transpose: bool = False) -> torch.Tensor:
    """Candidate cell (row-major) paired with each query cell, long `[..., h w]`.

    ``transferred`` `[..., h w, 2]`: normalised (x, y) in the candidate of the query's
    `grid_points`. A point's cell is ``floor((v + 1) / 2 n)`` clamped to the grid.
    """
    if transferred.shape[-2] != h * w:
        raise InputError(f"expected {h * w} transferred points, got {transferred.shape[-2]}")
    cx = ((transferred[..., 0] + 1) / 2 * w).floor().clamp(0, w - 1).long()
    cy = ((transferred[..., 1] + 1) / 2 * h).floor().clamp(0, h - 1).long()
    if not authors_transpose:
        return cy * w + cx
    if h != w:
        raise InputError("authors_transpose needs a square grid")
    k = torch.arange(h * w, device=transferred.device)
    swap = (k % w) * w + k // w  # the point of cell (c, r) for cell (r, c)
    return cx[..., swap] * w + cy[..., swap]


def cc_mask(query: torch.Tensor, cands: torch.Tensor, threshold: float = 0.55) -> torch.Tensor:
    """`[..., N, h w]` 0/1 mask of query cells whose cross-correlation with the candidate,
    min-max normalised over the query's cells, is >= ``threshold``.

    ``query`` `[..., C, h, w]` raw maps, ``cands`` `[..., N, C, h, w]`.
    """
    q = query.flatten(-2)  # [..., C, hw]
    mean_g = cands.flatten(-2).mean(-1)  # [..., N, C]
    cc = mean_g @ q  # [..., N, hw]  q_m . mean(g) (the positive scale of the authors' map cancels)
    lo = cc.amin(-1, keepdim=True)
    span = (cc.amax(-1, keepdim=True) - lo)
    norm = torch.where(span > 0, (cc - lo) / span.clamp_min(1e-30), torch.ones_like(cc))
    return (norm >= threshold).to(query.dtype)


def keypoint_mask(keypoints: torch.Tensor, size: tuple[int, int], grid: tuple[int, int], parts: list[int] | None = None) -> torch.Tensor:
    """CHM-Corr+'s query mask `[h w]`: 1 at cells holding a visible keypoint of ``parts``.

    ``keypoints`` `[P, 3]` (x, y, visible) pixels of an image of ``size`` `(H, W)`; keypoints
    outside the image are dropped (the authors' code wraps them to the last row/column).
    """
    H, W = size
    h, w = grid
    kp = keypoints if parts is None else keypoints[parts]
    ok = (kp[:, 2] > 0) & (kp[:, 0] >= 0) & (kp[:, 0] < W) & (kp[:, 1] >= 0) & (kp[:, 1] < H)
    kp = kp[ok]
    mask = torch.zeros(h * w, dtype=torch.float32, device=keypoints.device)
    cells = (kp[:, 1] * h / H).floor().long() * w + (kp[:, 0] * w / W).floor().long()
    mask[cells] = 1
    return mask


def paired_cosine(query: torch.Tensor, cands: torch.Tensor, cells: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Cosine `[..., N, h w]` of each query cell with its paired candidate cell ``cells`` `[..., N, h w]`."""
    q = query.flatten(-2)  # [..., C, hw]
    g = cands.flatten(-2)  # [..., N, C, hw]
    picked = g.gather(-1, cells.unsqueeze(-2).expand(*g.shape[:-1], cells.shape[-1]))  # [..., N, C, hw]
    dot = (q.unsqueeze(-3) * picked).sum(-2)
    norms = (q.norm(dim=-2).unsqueeze(-2) * picked.norm(dim=-2)).clamp_min(eps)
    return dot / norms


def chm_corr_scores(query: torch.Tensor, cands: torch.Tensor, cells: torch.Tensor, mask: torch.Tensor, *, pairs: int = 5,
                    reduce: Literal["top", "all"] = "top") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Scores `[..., N]`, the L best pairs long `[..., N, L, 2]` (query cell, candidate cell)
    and their weights (cosine x mask) `[..., N, L]`.

    ``reduce="top"``: mean of the top L of cosine x mask (CHM-Corr). ``"all"``: mean over
    every query cell (CHM-Corr+); the pairs are still the L largest terms.
    ``mask`` `[..., N, h w]` or broadcastable to it.
    """
    weighted = paired_cosine(query, cands, cells) * mask
    L = min(pairs, weighted.shape[-1])
    top, idx = weighted.topk(L, dim=-1)
    score = top.mean(-1) if reduce == "top" else weighted.mean(-1)
    out_pairs = torch.stack([idx, cells.gather(-1, idx)], -1)
    return score, out_pairs, top
