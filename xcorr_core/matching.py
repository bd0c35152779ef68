"""Matchers shipped with the core: brute-force mutual nearest neighbours between the cells of
two feature maps (OpenCV's BFMatcher with crossCheck), the building block that correspondence
re-rankers and explainers share. Batched on the inputs' device; no loop over cells."""
from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field

from .components import Matcher, StrictConfig
from .errors import InputError
from .results import Matches
from .validation import check_same_device, check_tensor

__all__ = ["mutual_nearest_neighbours", "MutualNNMatcher"]


def mutual_nearest_neighbours(a: torch.Tensor, b: torch.Tensor, metric: Literal["l2", "cosine"] = "l2") -> tuple[torch.Tensor, torch.Tensor]:
    """Mutual nearest neighbours of the cells of ``a`` `[C, H, W]` and ``b`` `[C, H', W']`.

    Cell i of a and cell j of b match when j is i's nearest cell in b and i is j's nearest
    cell in a (ties go to the lowest index, as ``argmin``). Distances are computed in float64
    so that near-ties are decided consistently in both directions.

    Returns:
        ``(pairs [M, 2], distances [M])``: flattened row-major cell indices (into a, into b),
        sorted by the a index; for ``"cosine"`` the distance is 1 - cosine.
    """
    check_tensor("a", a, ndim=3, floating=True, finite=True, non_empty=True)
    check_tensor("b", b, ndim=3, floating=True, finite=True, non_empty=True)
    check_same_device(a=a, b=b)
    if a.shape[0] != b.shape[0]:
        raise InputError(f"a and b need the same number of channels, got {a.shape[0]} and {b.shape[0]}")
    fa, fb = a.flatten(1).T.double(), b.flatten(1).T.double()  # [Na, C], [Nb, C]
    if metric == "l2":
        d = torch.cdist(fa[None], fb[None])[0]
    elif metric == "cosine":
        d = 1 - F.normalize(fa, dim=1) @ F.normalize(fb, dim=1).T
    else:
        raise InputError(f"metric must be 'l2' or 'cosine', got {metric!r}")
    ab = d.argmin(dim=1)
    ba = d.argmin(dim=0)
    i = torch.arange(fa.shape[0], device=a.device)
    keep = ba[ab] == i
    pairs = torch.stack([i[keep], ab[keep]], dim=1)
    return pairs, d[pairs[:, 0], pairs[:, 1]].to(a.dtype)


class MutualNNMatcher(Matcher):
    """Mutual nearest neighbours on raw descriptors (L2 by default, as PAIR-X; cosine optional).
    ``Matches.scores`` are negative distances (higher = better)."""

    name = "mutual_nn"
    summary = "Mutual nearest neighbours between the cells of two feature maps (cross-checked brute force)"

    class Config(StrictConfig):
        metric: Literal["l2", "cosine"] = Field("l2", description="descriptor distance")

    def match(self, a: torch.Tensor, b: torch.Tensor) -> Matches:
        pairs, dist = mutual_nearest_neighbours(a, b, self.config.metric)
        return Matches(pairs=pairs, scores=-dist)
