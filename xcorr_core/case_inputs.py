"""What a pipeline adds to a `Case` when an explainer requires more than the decision: the
distractors of counterfactual explainers and the matched pair of pairwise explainers, both read
from the gallery `Pipeline.fit` kept. Depends on torch and the core's components module.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from .components import Case

__all__ = ["add_distractors", "add_pair"]


def add_pair(case: Case, *, gallery: Any) -> None:
    """``case.pair_image`` / ``pair_id``: the best-ranked neighbour of the predicted class (else the
    first neighbour). Leaves the case as it is without a gallery or neighbours."""
    if gallery is None or case.neighbour_ids is None or len(case.neighbour_ids) == 0:
        return
    ids, labels = case.neighbour_ids, case.neighbour_labels
    same = (labels == case.prediction).nonzero() if labels is not None and case.prediction is not None else torch.zeros(0, 1)
    pick = int(ids[int(same[0, 0])]) if len(same) else int(ids[0])
    case.pair_id, case.pair_image = pick, gallery[pick][0]


def add_distractors(case: Case, *, gallery: Any, index: Any, pooled: Callable[[torch.Tensor], torch.Tensor], n: int) -> None:
    """``case.distractors`` `[m, 3, H, W]` (m <= n), ``distractor_ids``, ``distractor_class``: gallery
    images of the nearest gallery class other than the prediction, nearest to the query first.
    ``pooled(image [3, H, W]) -> [1, D]`` gives the query's index vector; the search widens until the
    class has ``n`` images or the whole gallery was searched."""
    if gallery is None or index is None or case.image is None or case.prediction is None:
        return
    total = len(index)
    with torch.no_grad():
        q = pooled(case.image)
    k = min(total, max(64, 4 * n))
    while True:
        res = index.search(q, k)
        labels, ids = res.labels[0], res.ids[0]
        other = labels[labels != case.prediction]
        cls = int(other[0]) if len(other) else None
        if k >= total or (cls is not None and int((labels == cls).sum()) >= n):
            break
        k = min(total, 4 * k)
    if cls is None:
        return
    pick = ids[labels == cls][:n]
    case.distractor_class, case.distractor_ids = cls, pick
    case.distractors = torch.stack([gallery[int(i)][0] for i in pick])
