"""Weight sharing of the CHM kernels ('psi', 'iso', 'full'), as index tables.

A 4D kernel entry ``(si, sj, ti, tj)`` (source offset, target offset in a k^4 window with
centre c) gets the weight of its group; the groups are

* ``psi``: equal key ``(max(d_s, d_t), min(d_s, d_t), d_o)`` with the integer squared
  distances d_s = |(si, sj) - c|^2, d_t = |(ti, tj) - c|^2, d_o = |(si, sj) - (ti, tj)|^2
  (55 weights for 5^4): invariant to rotations and reflections and to swapping source
  and target;
* ``iso``: equal d_o (15 weights for 5^4);
* ``full``: one weight per entry (625).

Group ids follow the order in which a row-major walk over the entries first meets each
key, which is the order of the authors' parameter vectors (so their checkpoints load
as they are). An entry's value is its group's weight divided by the group's size.

The 6D kernel (3 x 3 scale offsets x 5^4) shares one 4D weight vector within each scale
group: ``psi`` {(1,1)}, {(0,0),(2,2)}, {(0,2),(2,0)}, {(0,1),(1,0),(1,2),(2,1)}; ``iso``
merges the first two; ``full`` gives each of the 9 positions its own 5^4 weights. Entries
are also divided by the scale group's size.
Depends on torch only.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Literal

import torch

__all__ = ["KernelType", "kernel_groups", "scale_groups", "assemble_4d", "assemble_6d"]

KernelType = Literal["psi", "iso", "full"]

#: flattened 3x3 scale-kernel positions (a * 3 + b) of each scale group, as in the authors' code
_SCALE_GROUPS: dict[str, list[list[int]]] = {
    "psi": [[4], [0, 8], [2, 6], [1, 3, 5, 7]],
    "iso": [[0, 4, 8], [2, 6], [1, 3, 5, 7]],
    "full": [[i] for i in range(9)],
}


@lru_cache(maxsize=None)
def kernel_groups(ksize: int = 5, ktype: KernelType = "psi") -> tuple[torch.Tensor, int]:
    """``(group [k^4] long, n_groups)``: the weight index of every entry of a k^4 kernel
    (entries in row-major order of (si, sj, ti, tj))."""
    if ktype not in _SCALE_GROUPS:
        raise ValueError(f"ktype must be 'psi', 'iso' or 'full', got {ktype!r}")
    if ksize < 1 or ksize % 2 == 0:
        raise ValueError(f"kernel size must be odd and >= 1, got {ksize}")
    r = torch.arange(ksize)
    si, sj, ti, tj = (g.flatten() for g in torch.meshgrid(r, r, r, r, indexing="ij"))
    if ktype == "full":
        return torch.arange(ksize**4), ksize**4
    c = ksize // 2
    d_s = (si - c) ** 2 + (sj - c) ** 2
    d_t = (ti - c) ** 2 + (tj - c) ** 2
    d_o = (si - ti) ** 2 + (sj - tj) ** 2
    span = 2 * (ksize - 1) ** 2 + 1  # every squared distance is below this
    key = d_o if ktype == "iso" else (torch.maximum(d_s, d_t) * span + torch.minimum(d_s, d_t)) * span + d_o
    # ids in order of first appearance along the row-major walk
    uniq, inverse = torch.unique(key, return_inverse=True)
    first = torch.full((uniq.numel(),), key.numel(), dtype=torch.long).scatter_reduce(0, inverse, torch.arange(key.numel()), "amin")
    rank = torch.empty_like(first)
    rank[first.argsort()] = torch.arange(first.numel())
    return rank[inverse], int(uniq.numel())


def scale_groups(ktype: KernelType = "psi") -> list[list[int]]:
    """Flattened 3x3 scale-kernel positions of each scale group (one 4D weight vector each)."""
    return [list(g) for g in _SCALE_GROUPS[ktype]]


def assemble_4d(weight: torch.Tensor, ksize: int, ktype: KernelType) -> torch.Tensor:
    """The `[k, k, k, k]` kernel from a group weight vector `[n_groups]` (one gather, one divide)."""
    group, n = kernel_groups(ksize, ktype)
    group = group.to(weight.device)
    size = torch.bincount(group, minlength=n).to(weight.dtype)
    return (weight[group] / size[group]).view(ksize, ksize, ksize, ksize)


def assemble_6d(weights: list[torch.Tensor] | tuple[torch.Tensor, ...], ksize: int, ktype: KernelType) -> torch.Tensor:
    """The `[3, 3, k, k, k, k]` kernel from one weight vector `[n_groups]` per scale group."""
    groups = scale_groups(ktype)
    if len(weights) != len(groups):
        raise ValueError(f"{ktype} 6D kernels need {len(groups)} weight vectors, got {len(weights)}")
    which = torch.empty(9, dtype=torch.long)
    gsize = torch.empty(9)
    for g, members in enumerate(groups):
        which[members] = g
        gsize[members] = len(members)
    per_group = torch.stack([assemble_4d(w, ksize, ktype) for w in weights])  # [G, k, k, k, k]
    k6 = per_group[which.to(per_group.device)] / gsize.to(per_group)[:, None, None, None, None]
    return k6.view(3, 3, ksize, ksize, ksize, ksize)
