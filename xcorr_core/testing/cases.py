"""Decisions to explain, as a pipeline builds them: a kNN `Pipeline` on a model's pooled features,
fitted on a small gallery, and its `Pipeline.cases`. Used by the conformance kit's ``xcorr_cases``
fixture and by plugin tests that need realistic cases."""
from __future__ import annotations

from torch import nn

from ..components import Case
from ..data import SynthBirds
from ..pipeline import Pipeline

__all__ = ["knn_cases"]


def knn_cases(model: nn.Module, queries: SynthBirds, *, layer: str = "layer4", k: int = 5,
              gallery: SynthBirds | None = None) -> list[Case]:
    """One `Case` per query image of ``queries``: image `[3, H, W]`, target, kNN prediction and
    confidence (votes / k), and the k neighbours' gallery ids, labels and cosine scores.

    The gallery defaults to the SynthBirds train split with the queries' classes, 5 per class."""
    gallery = gallery if gallery is not None else SynthBirds("train", per_class=5, num_classes=queries.num_classes, progress=False)
    spec = {"features": {"pooled_layer": layer, "spatial_layer": None}, "decision": {"k": k}, "shortlist": k}
    pipe = Pipeline(spec, model=model).fit(gallery, progress=False)
    return pipe.cases(queries, list(range(len(queries))))
