"""Prototype projection and the gallery of training profiles.

After training each prototype is replaced by the training patch (un-augmented, any class)
of highest cosine to it, so it can be shown as a piece of a real image; several prototypes may
land on one patch (counted and reported, not prevented, as in the paper). The gallery of
training profiles is then recomputed. Depends on torch and this plugin's model.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from pydantic import ConfigDict

from xcorr_core.results import Tensor, TensorModel

from .model import ProtoKNNNet
from .prototypes import prototype_variance

__all__ = ["ProjectionResult", "project_prototypes", "encode"]


class ProjectionResult(TensorModel):
    """Where every prototype was projected.

    Attributes:
        source_ids: long `[M]` training image of each prototype's patch.
        source_cells: long `[M]` its cell (row-major in ``grid``).
        cosines: `[M]` cosine between the prototype before and its patch.
        duplicates: prototypes that share their patch with an earlier prototype.
        variance_before, variance_after: `prototype_variance` before and after.
        grid: `(h, w)` of the patch grid.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)
    source_ids: Tensor
    source_cells: Tensor
    cosines: Tensor
    duplicates: int
    variance_before: float
    variance_after: float
    grid: tuple[int, int]


def _batches(images: torch.Tensor, batch: int) -> Any:
    for s in range(0, images.shape[0], batch):
        x = images[s:s + batch]
        yield s, (x.float() / 255 if x.dtype == torch.uint8 else x)


@torch.no_grad()
def encode(model: ProtoKNNNet, images: torch.Tensor, batch: int = 128) -> tuple[torch.Tensor, torch.Tensor, tuple[int, int]]:
    """``(profiles [N, M], peak_cells [N, M], grid)``: each image's profile and, per prototype, the
    cell where its cosine peaks. ``images`` uint8 or float `[N, 3, H, W]`."""
    model.eval()
    profiles, cells = [], []
    grid = (0, 0)
    for _, x in _batches(images, batch):
        z = model.patches(model.feature_map(x))
        grid = (z.shape[-2], z.shape[-1])
        cos = model.profile.cosines(z)
        s, c = cos.max(-1)
        profiles.append(s)
        cells.append(c)
    return torch.cat(profiles), torch.cat(cells), grid


@torch.no_grad()
def project_prototypes(model: ProtoKNNNet, images: torch.Tensor, batch: int = 128) -> ProjectionResult:
    """Move every prototype of ``model`` onto its nearest training patch (in place); see the module doc."""
    model.eval()
    protos = model.prototypes.clone()
    m = protos.shape[0]
    best = torch.full((m,), -2.0)
    src_id = torch.zeros(m, dtype=torch.long)
    src_cell = torch.zeros(m, dtype=torch.long)
    best_vec = protos.clone()
    grid = (0, 0)
    for s, x in _batches(images, batch):
        zmap = model.patches(model.feature_map(x))
        grid = (int(zmap.shape[-2]), int(zmap.shape[-1]))
        z = F.normalize(zmap.flatten(2), dim=1)  # [b, D, P]
        cos = torch.einsum("bdp,md->mbp", z, protos).flatten(1)  # [M, b P]
        val, where = cos.max(1)
        better = val > best
        b_idx, cell = where // z.shape[-1], where % z.shape[-1]
        best = torch.where(better, val, best)
        src_id = torch.where(better, s + b_idx, src_id)
        src_cell = torch.where(better, cell, src_cell)
        best_vec[better] = z[b_idx[better], :, cell[better]]
    key = src_id * (grid[0] * grid[1]) + src_cell
    duplicates = m - int(key.unique().numel())
    before = prototype_variance(protos)
    model.profile.prototypes.copy_(F.normalize(best_vec, dim=1))
    return ProjectionResult(source_ids=src_id, source_cells=src_cell, cosines=best, duplicates=duplicates, variance_before=before,
                            variance_after=prototype_variance(model.prototypes), grid=grid)
