"""ProtoKNN's explanation, "this looks like it rather than that": for a query a, its nearest
training neighbour p of the predicted class and the nearest neighbour n of a contrast class,
the per-prototype contributions delta_i = (s_a,i - s_n,i)^2 - (s_a,i - s_p,i)^2 (summing
exactly to d_an^2 - d_ap^2), and the top prototypes shown with their source patch and where
each peaks in a, p and n. Depends on torch, matplotlib (figures) and the core."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from xcorr_core.errors import InputError
from xcorr_core.results import Explanation, Tensor
from xcorr_core.validation import check_tensor

__all__ = ["ProtoKNNExplanation", "contributions", "explain_profile"]


def contributions(query: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor) -> torch.Tensor:
    """delta `[..., M]` = (s_a - s_n)^2 - (s_a - s_p)^2; its sum is d_an^2 - d_ap^2."""
    for name, t in (("query", query), ("positive", positive), ("negative", negative)):
        check_tensor(name, t, floating=True, finite=True)
    delta = (query - negative) ** 2 - (query - positive) ** 2
    if not bool(torch.isfinite(delta).all()):
        raise InputError("the contributions overflow float range: profiles of magnitude near 1e19 or more; scale them down")
    return delta


class ProtoKNNExplanation(Explanation):
    """One decision explained by prototypes.

    Attributes:
        positive_id, negative_id: gallery ids of p (predicted class) and n (contrast class).
        contrast_class: the class of n.
        difference: d_an^2 - d_ap^2 (> 0: the query is nearer p).
        contributions: `[M]` delta_i, summing to ``difference``.
        top: long `[T]` the prototypes with the largest delta_i.
        query_cells, positive_cells, negative_cells: long `[T]` where each top prototype peaks.
        source_ids, source_cells: long `[T]` the training patch each top prototype was projected to.
        grid: `(h, w)` of the patch grid.
    """

    positive_id: int
    negative_id: int
    contrast_class: int
    difference: float
    contributions: Tensor
    top: Tensor
    query_cells: Tensor
    positive_cells: Tensor
    negative_cells: Tensor
    source_ids: Tensor
    source_cells: Tensor
    grid: tuple[int, int]

    def plot(self, images: Callable[[int], torch.Tensor] | None = None, query: torch.Tensor | None = None,
             class_names: list[str] | None = None, target: int | None = None) -> Any:
        """The paper's layout: one row per top prototype — its source patch, then the query, p and n
        with the box where it peaks; ``images(id)`` fetches gallery images `[3, H, W]`; ``target``: the
        query's true class, when known."""
        from .figure import plot_protoknn

        return plot_protoknn(self, images=images, query=query, class_names=class_names, target=target)


def explain_profile(query_profile: torch.Tensor, query_cells: torch.Tensor, gallery: Any, gallery_cells: torch.Tensor,
                    projection: Any, prediction: int, *, contrast: int | None = None, top: int = 3,
                    query_id: int | None = None) -> ProtoKNNExplanation:
    """Explain one query from its profile `[M]` and per-prototype peak cells `[M]`.

    ``gallery`` is the `ProtoKNNClassifier`, ``gallery_cells`` `[N, M]` its peak cells,
    ``projection`` the `ProjectionResult`; ``contrast`` defaults to the class of the nearest
    gallery profile of another class than ``prediction``.
    """
    q = query_profile.float().cpu()[None]
    if contrast is None and not bool((gallery.labels != prediction).any()):
        raise InputError(f"every gallery image is of the predicted class {prediction}: a 'rather than that' explanation needs "
                         "a gallery with at least one other class")
    if contrast is None:
        d = torch.cdist(q, gallery.profiles)[0]
        d = torch.where(gallery.labels != prediction, d, torch.full_like(d, float("inf")))
        contrast = int(gallery.labels[d.argmin()])
    if contrast == prediction:
        raise InputError(f"the contrast class must differ from the predicted class {prediction}")
    pid, _ = gallery.nearest_of_class(q, torch.tensor([prediction]))
    nid, _ = gallery.nearest_of_class(q, torch.tensor([contrast]))
    p, n = gallery.profiles[pid[0]], gallery.profiles[nid[0]]
    delta = contributions(q[0], p, n)
    t = delta.topk(min(top, delta.numel())).indices
    return ProtoKNNExplanation(
        method="protoknn", query_id=query_id, prediction=prediction, positive_id=int(pid[0]), negative_id=int(nid[0]),
        contrast_class=contrast, difference=float(delta.sum()), contributions=delta, top=t, query_cells=query_cells.cpu()[t],
        positive_cells=gallery_cells[pid[0]][t], negative_cells=gallery_cells[nid[0]][t], source_ids=projection.source_ids[t],
        source_cells=projection.source_cells[t], grid=tuple(projection.grid))
