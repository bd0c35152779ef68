"""Keypoints and boxes on the feature grid (the authors' mapping: cell = floor(coordinate / cell size))."""
from __future__ import annotations

import torch

from xcorr_core.errors import InputError

__all__ = ["keypoint_cells", "cell_parts", "cells_in_box"]


def keypoint_cells(keypoints: torch.Tensor, grid: tuple[int, int], image_size: int | tuple[int, int]) -> torch.Tensor:
    """Flattened grid cell `h_idx * w + w_idx` of each visible keypoint, -1 for invisible or outside ones.

    Args:
        keypoints: `[..., P, 3]` (x, y, visible) in pixels.
        grid: `(h, w)` of the feature map.
        image_size: side (or `(height, width)`) of the images the keypoints refer to.
    Returns: long `[..., P]`.
    """
    if keypoints.shape[-1] != 3:
        raise InputError(f"keypoints must be [..., P, 3] (x, y, visible), got {tuple(keypoints.shape)}")
    h, w = grid
    ih, iw = (image_size, image_size) if isinstance(image_size, int) else image_size
    x, y, vis = keypoints.unbind(-1)
    cx = torch.floor(x * w / iw).long()
    cy = torch.floor(y * h / ih).long()
    ok = (vis > 0) & (cx >= 0) & (cx < w) & (cy >= 0) & (cy < h)
    return torch.where(ok, cy * w + cx, torch.full_like(cx, -1))


def cell_parts(keypoints: torch.Tensor, grid: tuple[int, int], image_size: int | tuple[int, int]) -> torch.Tensor:
    """Which parts lie in which cell: bool `[..., h*w, P]` from keypoints `[..., P, 3]`."""
    cells = keypoint_cells(keypoints, grid, image_size)
    hw = grid[0] * grid[1]
    onehot = torch.nn.functional.one_hot(cells.clamp(min=0), hw).bool() & (cells >= 0)[..., None]  # [..., P, hw]
    return onehot.transpose(-1, -2)


def cells_in_box(boxes: torch.Tensor, grid: tuple[int, int], image_size: int | tuple[int, int]) -> torch.Tensor:
    """bool `[..., h*w]`: the cell's centre lies inside the box `[..., 4]` (x0, y0, x1, y1) in pixels."""
    h, w = grid
    ih, iw = (image_size, image_size) if isinstance(image_size, int) else image_size
    cy = (torch.arange(h, dtype=boxes.dtype) + 0.5) * ih / h
    cx = (torch.arange(w, dtype=boxes.dtype) + 0.5) * iw / w
    gy, gx = torch.meshgrid(cy, cx, indexing="ij")
    gx, gy = gx.flatten(), gy.flatten()
    b = boxes[..., None, :]
    return (gx >= b[..., 0]) & (gx < b[..., 2]) & (gy >= b[..., 1]) & (gy < b[..., 3])
