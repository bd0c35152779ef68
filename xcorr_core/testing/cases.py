"""Decisions to explain, built with the public API the way a pipeline builds them: kNN on a
model's pooled features, one `Case` per query. Used by the conformance kit's ``xcorr_cases``
fixture and by plugin tests that need realistic cases without running a whole pipeline."""
from __future__ import annotations

import torch
from torch import nn

from ..components import Case
from ..data import SynthBirds
from ..features import FeatureExtractor
from ..index import GalleryIndex
from ..knn import KNNClassifier

__all__ = ["knn_cases"]


def knn_cases(model: nn.Module, queries: SynthBirds, *, layer: str = "layer4", k: int = 5,
              gallery: SynthBirds | None = None) -> list[Case]:
    """One `Case` per query image of ``queries``: image `[3, H, W]`, target, kNN prediction and
    confidence (votes / k), and the k neighbours' gallery ids, labels and cosine scores.

    The gallery defaults to the SynthBirds train split with the queries' classes, 5 per class."""
    gallery = gallery if gallery is not None else SynthBirds("train", per_class=5, num_classes=queries.num_classes, progress=False)
    fx = FeatureExtractor(model, [layer])
    with torch.no_grad():
        g = fx(gallery.images.float() / 255).pooled[layer]
        q = fx(queries.images.float() / 255).pooled[layer]
    index = GalleryIndex(dim=g.shape[1])
    index.add(g, labels=gallery.labels)
    pred = KNNClassifier(index, k=k).predict(q)
    nb = pred.neighbours
    return [Case(query_id=i, image=queries.images[i].float() / 255, target=int(queries.labels[i]),
                 prediction=int(pred.predictions[i]), confidence=float(pred.confidences[i]), method="knn",
                 neighbour_ids=nb.ids[i], neighbour_labels=nb.labels[i], neighbour_scores=nb.scores[i])
            for i in range(len(queries))]
