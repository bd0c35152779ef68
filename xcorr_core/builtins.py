"""Components that ship with the core, registered through the same hooks as any plugin:
the mutual-nearest-neighbour matcher, the kNN neighbour explanation and the accuracy metrics.
"""
from __future__ import annotations

from typing import Any, ClassVar

import torch
from pydantic import Field

from .components import Case, Explainer, Metric, StrictConfig
from .errors import InputError
from .hookspecs import hookimpl
from .knn import NeighbourExplanation, explain_neighbours
from .results import MetricResult
from .stats import mcnemar_exact, t_interval, wilson_interval  # noqa: F401  (re-exported)
from .validation import check_tensor


class NeighbourExplainer(Explainer):
    """Up to ``top`` nearest neighbours of the predicted class among the voters,
    with the re-ranker's patch pairs on each when the decision came from one."""

    name = "nearest_neighbours"
    summary = "Nearest neighbours of the predicted class among the top k (kNN / Corr explanations)"
    requires: ClassVar[frozenset[str]] = frozenset({"neighbour_ids", "neighbour_labels", "neighbour_scores", "prediction"})

    class Config(StrictConfig):
        top: int = Field(5, ge=1, description="maximum number of support images (the paper shows 5)")

    def explain(self, case: Case) -> NeighbourExplanation:
        if case.neighbour_ids is None or case.neighbour_labels is None or case.neighbour_scores is None or case.prediction is None:
            raise InputError("nearest_neighbours needs neighbour_ids, neighbour_labels, neighbour_scores and prediction")
        exp = explain_neighbours(
            case.neighbour_ids, case.neighbour_labels, case.neighbour_scores, case.prediction, case.confidence,
            top=self.config.top, query_id=case.query_id, method=self.name,
        )
        exp.meta["decided_by"] = case.method or "knn"
        if case.ranking is not None and case.shortlist_ids is not None:
            # locate each support image in the shortlist to attach its scored patch pairs
            where = (case.shortlist_ids[None, :] == exp.support_ids[:, None]).int().argmax(1)
            exp.patch_pairs = case.ranking.pairs[where]
            exp.patch_weights = case.ranking.weights[where]
            exp.grid = case.grid
        return exp


#: the shared helpers live in `xcorr_core.stats`; these names stay for code that imported them here
mean_t_interval = t_interval


class Top1Accuracy(Metric):
    """Fraction of correct predictions, with a Wilson confidence interval."""

    name = "top1_accuracy"
    summary = "Top-1 accuracy with a Wilson score confidence interval"
    requires: ClassVar[frozenset[str]] = frozenset({"predictions", "targets"})

    class Config(StrictConfig):
        ci_level: float = Field(0.95, gt=0.0, lt=1.0, description="confidence level of the interval")

    def compute(self, **data: Any) -> MetricResult:
        pred = check_tensor("predictions", data.get("predictions"), ndim=1, floating=False)
        tgt = check_tensor("targets", data.get("targets"), shape=[pred.shape[0]], floating=False)
        if pred.numel() == 0:
            raise InputError("no predictions to score")
        correct = (pred == tgt).float()
        hits, n = int(correct.sum()), correct.numel()
        return MetricResult(name=self.name, value=hits / n, per_sample=correct, ci=wilson_interval(hits, n, self.config.ci_level),
                            ci_level=self.config.ci_level, n=n)


class MeanConfidence(Metric):
    """Mean confidence, and the gap to accuracy (over-confidence when positive)."""

    name = "mean_confidence"
    summary = "Mean confidence of the predictions and its gap to accuracy"
    requires: ClassVar[frozenset[str]] = frozenset({"predictions", "targets", "confidences"})

    def compute(self, **data: Any) -> MetricResult:
        conf = check_tensor("confidences", data.get("confidences"), ndim=1, floating=True, finite=True, non_empty=True)
        pred = check_tensor("predictions", data.get("predictions"), shape=[conf.shape[0]], floating=False)
        tgt = check_tensor("targets", data.get("targets"), shape=[conf.shape[0]], floating=False)
        acc = float((pred == tgt).float().mean())
        return MetricResult(name=self.name, value=float(conf.mean()), per_sample=conf, n=conf.numel(),
                            details={"accuracy": acc, "overconfidence": float(conf.mean()) - acc})


@hookimpl
def register_matchers(register: Any) -> None:
    from .matching import MutualNNMatcher

    register(MutualNNMatcher)


@hookimpl
def register_explainers(register: Any) -> None:
    register(NeighbourExplainer)


@hookimpl
def register_metrics(register: Any) -> None:
    register(Top1Accuracy)
    register(MeanConfidence)
