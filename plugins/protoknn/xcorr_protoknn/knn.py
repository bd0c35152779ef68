"""kNN over ProtoKNN profiles: squared Euclidean distance in profile space, majority vote over
the k nearest training profiles (the core's faiss `GalleryIndex`, metric ``l2``); ties go to
the class with the smallest summed distance, then the lowest class id (an assumption: the
paper does not say). Depends on torch and the core's index.
"""
from __future__ import annotations

import torch
from pydantic import ConfigDict

from xcorr_core.errors import InputError
from xcorr_core.index import GalleryIndex
from xcorr_core.results import Tensor, TensorModel
from xcorr_core.validation import check_tensor

__all__ = ["ProtoKNNClassifier", "ProtoKNNPrediction", "vote"]


class ProtoKNNPrediction(TensorModel):
    """Decisions for Q queries: ``predictions`` long `[Q]`, ``votes`` long `[Q]`, the neighbours'
    gallery ``ids`` / ``labels`` long `[Q, k]` and squared ``distances`` `[Q, k]`, nearest first."""

    model_config = ConfigDict(arbitrary_types_allowed=True)
    predictions: Tensor
    votes: Tensor
    ids: Tensor
    labels: Tensor
    distances: Tensor


def vote(labels: torch.Tensor, distances: torch.Tensor, num_classes: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Majority class of each row of ``labels`` `[Q, k]`; ties to the smallest summed ``distances``,
    then the lowest class id. Returns ``(predictions [Q], votes [Q])``.

    Counted among the k neighbours of each row (`[Q, k, k]` comparisons), so memory does not grow with
    the largest class id (a label of 10^9 costs nothing). ``num_classes`` is not needed; it is accepted
    for compatibility."""
    check_tensor("labels", labels, ndim=2, floating=False)
    check_tensor("distances", distances, shape=list(labels.shape), finite=True)
    distances = distances.float() if not distances.is_floating_point() else distances
    same = labels[:, :, None] == labels[:, None, :]  # [Q, k, k]: neighbour i and j share a class
    counts = same.sum(-1)  # [Q, k]: votes of neighbour i's class
    sums = (same * distances[:, None, :]).sum(-1)  # summed distance of neighbour i's class (the same for its class-mates)
    tied = counts == counts.amax(1, keepdim=True)
    key = torch.where(tied, sums, torch.full_like(sums, float("inf")))
    best = tied & (key == key.amin(1, keepdim=True))
    pred = torch.where(best, labels, torch.full_like(labels, torch.iinfo(labels.dtype).max)).amin(1)  # lowest class id
    return pred, counts.gather(1, (labels == pred[:, None]).int().argmax(1, keepdim=True)).squeeze(1)


class ProtoKNNClassifier:
    """kNN over profiles.

    Args:
        profiles: `[N, M]` training profiles (after projection).
        labels: long `[N]`.
    """

    def __init__(self, profiles: torch.Tensor, labels: torch.Tensor) -> None:
        check_tensor("profiles", profiles, ndim=2, floating=True, finite=True, non_empty=True)
        check_tensor("labels", labels, shape=[profiles.shape[0]], floating=False)
        if bool((labels < 0).any()):
            raise InputError("every gallery profile needs a label >= 0")
        self.profiles, self.labels = profiles.float().cpu(), labels.long().cpu()
        self.num_classes = int(self.labels.max()) + 1
        self.index = GalleryIndex(profiles.shape[1], "l2")
        self.index.add(self.profiles, self.labels)

    def __len__(self) -> int:
        return self.profiles.shape[0]

    def predict(self, profiles: torch.Tensor, k: int = 1) -> ProtoKNNPrediction:
        """Classify query profiles `[Q, M]` by their ``k`` nearest gallery profiles."""
        check_tensor("profiles", profiles, ndim=2, floating=True, finite=True, non_empty=True)
        if profiles.shape[1] != self.profiles.shape[1]:
            raise InputError(f"query profiles have {profiles.shape[1]} prototypes, the gallery {self.profiles.shape[1]}")
        if not 1 <= k <= len(self):
            raise InputError(f"k={k} must be between 1 and the gallery size {len(self)}")
        res = self.index.search(profiles.float().cpu(), k)
        dist = -res.scores  # the index scores l2 as negative squared distances
        pred, votes = vote(res.labels, dist, self.num_classes)
        return ProtoKNNPrediction(predictions=pred, votes=votes, ids=res.ids, labels=res.labels, distances=dist)

    def nearest_of_class(self, profiles: torch.Tensor, classes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(ids [Q], squared distances [Q])`` of the nearest gallery profile of ``classes`` `[Q]` to each query."""
        d = torch.cdist(profiles.float().cpu(), self.profiles) ** 2  # [Q, N]
        d = torch.where(self.labels[None, :] == classes.cpu()[:, None], d, torch.full_like(d, float("inf")))
        dist, ids = d.min(1)
        if bool(torch.isinf(dist).any()):
            raise InputError("a requested class has no gallery profile")
        return ids, dist
