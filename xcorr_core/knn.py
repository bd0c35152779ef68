"""The kNN baseline of the EMD/CHM-Corr paper: majority vote over the top k = 20
neighbours, confidence = votes / k, explained by up to 5 nearest neighbours of
the predicted class.

Depends on torch and the core's index/results/validation modules.
"""
from __future__ import annotations

from typing import Any, Literal

import torch

from .errors import InputError
from .index import GalleryIndex, SearchResult
from .results import Explanation, Tensor, TensorModel
from .validation import check_tensor

__all__ = ["majority_vote", "support_neighbours", "KNNClassifier", "KNNPrediction", "NeighbourExplanation", "explain_neighbours",
           "explain_reranked"]

TieBreak = Literal["lowest_label", "nearest"]


def majority_vote(labels: torch.Tensor, num_classes: int | None = None, tie_break: TieBreak = "lowest_label") -> tuple[torch.Tensor, torch.Tensor]:
    """Majority label of each row of ``labels`` `[Q, k]` (best neighbour first).

    Ties go to the lowest class id (as in the authors' code) or, with
    ``tie_break="nearest"``, to the tied class whose best neighbour ranks highest.

    Returns:
        ``(predictions [Q], votes [Q])``, both long.
    """
    check_tensor("labels", labels, ndim=2, floating=False, non_empty=True)
    if bool((labels < 0).any()):
        raise InputError("labels must be >= 0 (a neighbour without a label cannot vote)")
    q, k = labels.shape
    c = int(labels.max()) + 1 if num_classes is None else num_classes
    if int(labels.max()) >= c:
        raise InputError(f"label {int(labels.max())} >= num_classes {c}")
    counts = torch.zeros(q, c, dtype=torch.int64, device=labels.device)
    counts.scatter_add_(1, labels, torch.ones_like(labels))
    if tie_break == "lowest_label":
        key = counts
    elif tie_break == "nearest":
        ranks = torch.arange(k, device=labels.device).expand(q, k)
        first = torch.full((q, c), k, dtype=torch.int64, device=labels.device)
        first.scatter_reduce_(1, labels, ranks, reduce="amin")
        key = counts * (k + 1) + (k - first)
    else:
        raise InputError(f"tie_break must be 'lowest_label' or 'nearest', got {tie_break!r}")
    pred = key.argmax(dim=1)  # argmax returns the first (lowest) index among equal maxima
    return pred, counts.gather(1, pred[:, None]).squeeze(1)


def support_neighbours(labels: torch.Tensor, predictions: torch.Tensor, top: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    """Ranks (positions in the top-k) of the first ``top`` neighbours of the predicted class.

    Args:
        labels: `[Q, k]` neighbour labels, best first.
        predictions: `[Q]` predicted labels.

    Returns:
        ``(ranks [Q, top], valid [Q, top])``; ``valid`` is False where the
        predicted class has fewer than ``top`` neighbours (the paper shows only those).
    """
    q, k = labels.shape
    hit = labels == predictions[:, None]
    # stable sort of "not a hit" puts hits first, in rank order
    ranks = torch.sort((~hit).to(torch.int8), dim=1, stable=True).indices[:, :top]
    valid = hit.gather(1, ranks)
    if ranks.shape[1] < top:
        pad = top - ranks.shape[1]
        ranks = torch.cat([ranks, ranks.new_zeros(q, pad)], 1)
        valid = torch.cat([valid, valid.new_zeros(q, pad)], 1)
    return ranks, valid


class KNNPrediction(TensorModel):
    """kNN decisions for Q queries.

    Attributes:
        predictions: long `[Q]`.
        confidences: `[Q]`, votes / k.
        votes: long `[Q]`.
        neighbours: the top-k search result behind each decision.
    """

    predictions: Tensor
    confidences: Tensor
    votes: Tensor
    neighbours: SearchResult


class NeighbourExplanation(Explanation):
    """Up to 5 nearest neighbours of the predicted class among the top k (the paper's kNN explanation).

    Attributes:
        support_ids: long `[m]` gallery ids, best first, m <= 5.
        support_scores: `[m]` their similarity to the query.
        support_ranks: long `[m]` their rank in the top k (0 = nearest).
        k: the number of neighbours that voted.
        patch_pairs: optional long `[m, L, 2]` patch pairs per support image
            (filled by correspondence re-rankers), `h * W + w` indices.
        patch_weights: optional `[m, L]`.
        grid: `(H, W)` of the patch grid the pairs index.
    """

    support_ids: Tensor
    support_scores: Tensor
    support_ranks: Tensor
    k: int
    patch_pairs: Tensor | None = None
    patch_weights: Tensor | None = None
    grid: tuple[int, int] | None = None

    def plot(self, images: Any = None, ax: Any = None, query: torch.Tensor | None = None, class_names: list[str] | None = None,
             target: int | None = None, boxes: bool | None = None) -> Any:
        """Query and support images; ``images(id) -> [3, H, W]`` fetches gallery images.

        Patch pairs are drawn as boxes unless ``boxes`` is False (default: ``meta["boxes"]``, else True).
        """
        from .viz import plot_neighbour_explanation

        show = boxes if boxes is not None else bool(self.meta.get("boxes", True))
        return plot_neighbour_explanation(self, images=images, query=query, class_names=class_names, target=target, boxes=show)


class KNNClassifier:
    """Majority vote of the k nearest gallery items (k = 20 in the paper).

    Args:
        index: a filled `GalleryIndex` with labels.
        k: neighbours that vote.
        tie_break: see `majority_vote`.
        num_classes: number of classes (default: max gallery label + 1).
    """

    def __init__(self, index: GalleryIndex, k: int = 20, tie_break: TieBreak = "lowest_label", num_classes: int | None = None) -> None:
        if len(index) == 0:
            raise InputError("the gallery index is empty")
        if bool((index.labels < 0).any()):
            raise InputError("every gallery item needs a label for kNN classification")
        if not 1 <= k <= len(index):
            raise InputError(f"k={k} must be between 1 and the gallery size {len(index)}")
        self.index, self.k, self.tie_break = index, k, tie_break
        self.num_classes = num_classes if num_classes is not None else int(index.labels.max()) + 1

    def predict(self, queries: torch.Tensor) -> KNNPrediction:
        """Classify ``queries`` `[Q, D]` (pooled features)."""
        res = self.index.search(queries, self.k)
        pred, votes = majority_vote(res.labels, self.num_classes, self.tie_break)
        return KNNPrediction(predictions=pred, confidences=votes.float() / self.k, votes=votes, neighbours=res)

    def explain(self, prediction: KNNPrediction, i: int, top: int = 5, query_id: int | None = None) -> NeighbourExplanation:
        """The explanation of query ``i`` of ``prediction``."""
        return explain_neighbours(
            prediction.neighbours.ids[i], prediction.neighbours.labels[i], prediction.neighbours.scores[i],
            int(prediction.predictions[i]), float(prediction.confidences[i]), top=top, query_id=query_id,
        )


def explain_neighbours(ids: torch.Tensor, labels: torch.Tensor, scores: torch.Tensor, prediction: int, confidence: float | None,
                       *, top: int = 5, query_id: int | None = None, method: str = "nearest_neighbours") -> NeighbourExplanation:
    """Build a `NeighbourExplanation` from one query's top-k ``ids``, ``labels``, ``scores`` `[k]`."""
    ranks, valid = support_neighbours(labels[None], torch.tensor([prediction], device=labels.device), top)
    r = ranks[0][valid[0]]
    return NeighbourExplanation(
        method=method, query_id=query_id, prediction=prediction, confidence=confidence,
        support_ids=ids[r], support_scores=scores[r], support_ranks=r, k=int(labels.shape[0]), meta={"decided_by": "knn"},
    )


def explain_reranked(case: Any, *, top: int = 5, method: str, meta: dict[str, Any] | None = None) -> NeighbourExplanation:
    """The explanation of a re-ranked decision: up to ``top`` re-ranked neighbours of the predicted
    class, each with the patch pairs and weights its re-ranker scored (``case.ranking``).

    ``case`` is a `Case` with ``neighbour_ids/labels/scores``, ``prediction``, ``ranking``,
    ``shortlist_ids`` and ``grid``; a missing field raises `InputError` naming it.
    """
    needed = ("neighbour_ids", "neighbour_labels", "neighbour_scores", "prediction", "ranking", "shortlist_ids", "grid")
    missing = [f for f in needed if getattr(case, f, None) is None]
    if missing:
        raise InputError(f"{method} explanation needs {missing}; run it on decisions of a re-ranker")
    exp = explain_neighbours(case.neighbour_ids, case.neighbour_labels, case.neighbour_scores, case.prediction, case.confidence,
                             top=top, query_id=case.query_id, method=method)
    where = (case.shortlist_ids[None, :] == exp.support_ids[:, None]).int().argmax(1)
    exp.patch_pairs = case.ranking.pairs[where]
    exp.patch_weights = case.ranking.weights[where]
    exp.grid = case.grid
    exp.meta = {"decided_by": case.method, **(meta or {})}
    return exp
