"""`CellMaps`: spatial maps in the layout patch-matching re-rankers read — cells x channels, unit length.

A map `[C, H, W]` becomes ``unit`` `[HW, C]` (each cell's feature vector divided by its L2 norm,
contiguous per cell), ``norms`` `[HW]` and ``mean`` `[C]` (the raw map's mean over cells). Nothing
is lost: ``unit * norms`` is the raw map again. Done once when a gallery is stored, it spares a
re-ranker a transpose and a normalisation of every candidate on every call; cosine similarities of
query cells with all candidate cells are then one batched product over contiguous rows.
Depends on torch and the core's results and errors only.
"""
from __future__ import annotations

import torch

from .errors import InputError
from .results import TensorModel

__all__ = ["CellMaps"]


class CellMaps(TensorModel):
    """Maps as unit cells, with any leading batch shape ``B`` (e.g. `[N]`, or `[Q, N]`).

    Attributes:
        unit: `[*B, HW, C]` each cell's features divided by its L2 norm (a zero cell stays zero).
        norms: `[*B, HW]` each cell's L2 norm.
        mean: `[*B, C]` the raw map's mean over its cells.
        grid: `(H, W)` of the maps; cell ``i`` is ``(i // W, i % W)``.
    """

    unit: torch.Tensor
    norms: torch.Tensor
    mean: torch.Tensor
    grid: tuple[int, int]

    @classmethod
    def from_maps(cls, maps: torch.Tensor) -> "CellMaps":
        """From raw maps `[*B, C, H, W]` (float)."""
        if maps.ndim < 3 or not maps.is_floating_point():
            raise InputError(f"maps must be float [..., C, H, W], got {maps.dtype} {list(maps.shape)}")
        flat = maps.flatten(-2)  # [*B, C, HW]
        cells = flat.transpose(-1, -2)  # [*B, HW, C]
        norms = cells.square().sum(-1).sqrt()
        unit = (cells / norms.clamp_min(torch.finfo(cells.dtype).tiny)[..., None]).contiguous()
        return cls(unit=unit, norms=norms, mean=flat.mean(-1), grid=(int(maps.shape[-2]), int(maps.shape[-1])))

    def maps(self) -> torch.Tensor:
        """The raw maps `[*B, C, H, W]`."""
        cells = self.unit * self.norms[..., None]
        return cells.transpose(-1, -2).unflatten(-1, self.grid)

    @property
    def batch_shape(self) -> torch.Size:
        return self.norms.shape[:-1]

    def unflatten(self, sizes: tuple[int, int]) -> "CellMaps":
        """Split the first batch axis into ``sizes`` (e.g. `[Q*N]` -> `[Q, N]`)."""
        return CellMaps(unit=self.unit.unflatten(0, sizes), norms=self.norms.unflatten(0, sizes), mean=self.mean.unflatten(0, sizes),
                        grid=self.grid)

    def __getitem__(self, i: int | slice | torch.Tensor) -> "CellMaps":
        return CellMaps(unit=self.unit[i], norms=self.norms[i], mean=self.mean[i], grid=self.grid)
