"""The template's components. Each is a class with ``name``, ``summary``, a nested
pydantic ``Config`` and the method of its kind; batched torch, on the inputs' device.
"""
from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from pydantic import Field

import xcorr_core as xc
from xcorr_core.validation import check_same_device, check_tensor


def _cells(x: torch.Tensor) -> torch.Tensor:
    """[..., C, H, W] -> L2-normalised cell descriptors [..., H*W, C]."""
    return F.normalize(x.flatten(-2).transpose(-1, -2), dim=-1)


class ArgmaxMatcher(xc.Matcher):
    """Each cell of ``a`` matched to its most cosine-similar cell of ``b``."""

    name = "template_argmax"
    summary = "Template: every cell of a to its most similar cell of b (cosine)"

    class Config(xc.StrictConfig):
        min_score: float = Field(-1.0, ge=-1.0, le=1.0, description="drop matches below this cosine")

    def match(self, a: torch.Tensor, b: torch.Tensor) -> xc.Matches:
        check_tensor("a", a, ndim=3, floating=True, finite=True)
        check_tensor("b", b, ndim=3, floating=True, finite=True)
        check_same_device(a=a, b=b)
        if a.shape[0] != b.shape[0]:
            raise xc.InputError(f"a and b need the same channels, got {a.shape[0]} and {b.shape[0]}")
        sim = _cells(a) @ _cells(b).T  # [HWa, HWb]
        best, j = sim.max(dim=1)
        keep = best >= self.config.min_score
        i = torch.arange(sim.shape[0], device=a.device)
        return xc.Matches(pairs=torch.stack([i[keep], j[keep]], 1), scores=best[keep])


class PatchCosineReRanker(xc.ReRanker):
    """Score = mean of the ``pairs`` best query-cell -> candidate-cell cosines."""

    name = "template_patch_cosine"
    summary = "Template: mean of the L best cell-to-cell cosines"

    class Config(xc.StrictConfig):
        pairs: int = Field(5, ge=1, description="patch pairs behind each score (L)")

    def rerank(self, query: torch.Tensor, candidates: torch.Tensor) -> xc.Ranking:
        check_tensor("query", query, ndim=3, floating=True, finite=True)
        check_tensor("candidates", candidates, ndim=4, floating=True, finite=True, non_empty=True)
        check_same_device(query=query, candidates=candidates)
        if candidates.shape[1:] != query.shape:
            raise xc.InputError(f"candidates must be [N, {', '.join(map(str, query.shape))}], got {list(candidates.shape)}")
        L = min(self.config.pairs, query.shape[1] * query.shape[2])
        sim = _cells(query)[None] @ _cells(candidates).transpose(1, 2)  # [N, HWq, HWc]
        best, j = sim.max(dim=2)  # [N, HWq]
        w, qi = best.topk(L, dim=1)  # [N, L]
        pairs = torch.stack([qi, j.gather(1, qi)], dim=2)
        scores = w.mean(1)
        return xc.Ranking(order=torch.argsort(scores, descending=True), scores=scores, pairs=pairs, weights=w)


class VoteExplanation(xc.Explanation):
    """How the k neighbours' votes split over classes.

    Attributes:
        votes: long `[C]` votes per class.
    """

    votes: xc.Tensor


class VoteExplainer(xc.Explainer):
    """The vote histogram behind a nearest-neighbour decision."""

    name = "template_votes"
    summary = "Template: the neighbours' votes per class"
    requires: ClassVar[frozenset[str]] = frozenset({"neighbour_labels", "prediction"})

    class Config(xc.StrictConfig):
        num_classes: int | None = Field(None, ge=1, description="histogram length (default: max label + 1)")

    def explain(self, case: xc.Case) -> VoteExplanation:
        missing = sorted(f for f in self.requires if getattr(case, f) is None)
        if missing:
            raise xc.InputError(f"template_votes needs {missing}")
        n = self.config.num_classes or int(case.neighbour_labels.max()) + 1
        votes = torch.bincount(case.neighbour_labels, minlength=n)
        return VoteExplanation(method=self.name, query_id=case.query_id, prediction=case.prediction,
                               confidence=case.confidence, votes=votes)


class ErrorRate(xc.Metric):
    """1 - top-1 accuracy."""

    name = "template_error_rate"
    summary = "Template: fraction of wrong predictions"
    requires: ClassVar[frozenset[str]] = frozenset({"predictions", "targets"})

    def compute(self, **data: Any) -> xc.MetricResult:
        pred = check_tensor("predictions", data.get("predictions"), ndim=1, floating=False, non_empty=True)
        tgt = check_tensor("targets", data.get("targets"), shape=[pred.shape[0]], floating=False)
        wrong = (pred != tgt).float()
        return xc.MetricResult(name=self.name, value=float(wrong.mean()), per_sample=wrong, n=wrong.numel())
