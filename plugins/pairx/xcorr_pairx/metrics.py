"""PAIR-X plausibility metrics (per pair) and their data-set aggregates.

* inverted residual mean S1 = |M| / sum ||H(p1) - p2|| over all mutual matches M (before the
  relevance filter), H a homography from image a to image b (the paper estimates it by
  classical matching; on SynthHerd the true one is known);
* relevance-weighted match coverage: relevance of the matched cells (before filtering) over
  all relevance, both images together;
* Spearman's rho between a metric and the model's similarity;
* the binned Bhattacharyya separability Delta of correct vs incorrect pairs at similar model
  scores (the paper's Algorithm 1: 10 bins over the overlap of the middle 95 % of both groups'
  similarities, Gaussian KDE per bin, signed, weighted by bin counts).
"""
from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch
from pydantic import Field
from scipy import stats

import xcorr_core as xc
from xcorr_core.data import apply_homography

from .explain import PairXExplanation

__all__ = ["inverted_residual_mean", "match_coverage", "bhattacharyya_distance", "binned_bhattacharyya",
           "InvertedResidualMean", "MatchCoverage", "Separability", "RankCorrelation"]


def inverted_residual_mean(exp: PairXExplanation, homography: torch.Tensor) -> float:
    """S1 of one explanation; ``homography`` `[3, 3]` maps pixel (x, y) of image a to image b."""
    if exp.all_matches.shape[0] == 0:
        return 0.0
    pa = exp.cell_to_pixels(exp.all_matches[:, 0])
    pb = exp.cell_to_pixels(exp.all_matches[:, 1])
    res = (apply_homography(homography.double(), pa) - pb).norm(dim=1)
    total = float(res.sum())
    return float("inf") if total == 0 else exp.all_matches.shape[0] / total


def match_coverage(exp: PairXExplanation) -> float:
    """Relevance of the matched cells over all relevance (both images; before the top-n filter)."""
    ra, rb = exp.relevance_a.flatten(), exp.relevance_b.flatten()
    den = float(ra.sum() + rb.sum())
    if den == 0:
        return 0.0
    return float(ra[exp.all_matches[:, 0].unique()].sum() + rb[exp.all_matches[:, 1].unique()].sum()) / den


def bhattacharyya_distance(p: np.ndarray, q: np.ndarray) -> float:
    """-ln sum_i sqrt(p_i q_i) of two discrete distributions (normalised here)."""
    p, q = np.asarray(p, float), np.asarray(q, float)
    p, q = p / p.sum(), q / q.sum()
    bc = float(np.sqrt(p * q).sum())
    return float("inf") if bc <= 0 else -float(np.log(min(1.0, bc)))


def _kde(values: np.ndarray, grid: np.ndarray) -> np.ndarray | None:
    if np.ptp(values) == 0:
        return None  # a degenerate sample has no density
    return stats.gaussian_kde(values)(grid)


def binned_bhattacharyya(scores: np.ndarray, similarities: np.ndarray, correct: np.ndarray, *, bins: int = 10,
                         grid: int = 200, min_per_bin: int = 3) -> tuple[float, list[dict[str, float]]]:
    """The paper's Algorithm 1. Returns ``(Delta, per-bin details)``; Delta is 0 when no bin has
    at least ``min_per_bin`` correct and incorrect pairs. Positive: correct pairs score higher."""
    scores, sims, corr = (np.asarray(v) for v in (scores, similarities, correct))
    corr = corr.astype(bool)
    if not (scores.shape == sims.shape == corr.shape) or scores.ndim != 1:
        raise xc.InputError("scores, similarities and correct must be 1-D arrays of one length")
    if corr.all() or not corr.any():
        raise xc.InputError("need both correct and incorrect pairs")
    lo = max(np.percentile(sims[corr], 2.5), np.percentile(sims[~corr], 2.5))
    hi = min(np.percentile(sims[corr], 97.5), np.percentile(sims[~corr], 97.5))
    size = (hi - lo) / bins
    weighted, counted, details = 0.0, 0, []
    for i in range(bins):
        start, end = lo + i * size, lo + (i + 1) * size
        inside = (sims > start) & (sims < end)
        c, w = scores[inside & corr], scores[inside & ~corr]
        if c.size < min_per_bin or w.size < min_per_bin:
            continue
        xs = np.linspace(min(c.min(), w.min()), max(c.max(), w.max()), grid)
        pc, pw = _kde(c, xs), _kde(w, xs)
        if pc is None or pw is None:
            continue
        bd = bhattacharyya_distance(pc, pw)
        if c.mean() < w.mean():
            bd = -bd
        weighted += bd * (c.size + w.size)
        counted += c.size + w.size
        details.append({"start": float(start), "end": float(end), "correct": int(c.size), "incorrect": int(w.size), "distance": bd})
    return (weighted / counted if counted else 0.0), details


def _exps(data: dict[str, Any]) -> list[PairXExplanation]:
    exps = data.get("explanations")
    if not exps or not all(isinstance(e, PairXExplanation) for e in exps):
        raise xc.InputError("pass explanations=[PairXExplanation, ...]")
    return exps


class InvertedResidualMean(xc.Metric):
    """Mean over pairs of S1 (matches vs a homography per pair); a pair whose homography is not
    finite (different individuals, in a pipeline) is left out (``details["scored"]`` counts the rest)."""

    name = "pairx_inverted_residual"
    summary = "PAIR-X: inverted residual mean of the matches against a homography per pair"
    requires: ClassVar[frozenset[str]] = frozenset({"explanations", "homographies"})

    def compute(self, **data: Any) -> xc.MetricResult:
        exps, hs = _exps(data), data.get("homographies")
        if hs is None or len(hs) != len(exps):
            raise xc.InputError("pass one homography [3, 3] per explanation")
        vals = torch.tensor([inverted_residual_mean(e, h) if torch.isfinite(torch.as_tensor(h)).all() else float("nan")
                             for e, h in zip(exps, hs)], dtype=torch.float64)
        ok = torch.isfinite(vals)
        if not ok.any():
            raise xc.InputError("no pair has a finite homography (a pipeline gives NaN where the two photos show different individuals)")
        return xc.MetricResult(name=self.name, value=float(vals[ok].mean()), per_sample=vals, n=len(exps), details={"scored": int(ok.sum())})


class MatchCoverage(xc.Metric):
    """Mean over pairs of the relevance-weighted match coverage."""

    name = "pairx_coverage"
    summary = "PAIR-X: relevance-weighted match coverage"
    requires: ClassVar[frozenset[str]] = frozenset({"explanations"})

    def compute(self, **data: Any) -> xc.MetricResult:
        vals = torch.tensor([match_coverage(e) for e in _exps(data)], dtype=torch.float64)
        return xc.MetricResult(name=self.name, value=float(vals.mean()), per_sample=vals, n=vals.numel())


class RankCorrelation(xc.Statistic):
    """Spearman's rho between per-pair metric values and the model's similarity, over a set of pairs
    (a study-level statistic: one value per set, not per query)."""

    name = "pairx_spearman"
    summary = "PAIR-X: Spearman rho between a plausibility metric and the model similarity"
    requires: ClassVar[frozenset[str]] = frozenset({"scores", "similarities"})

    def compute(self, **data: Any) -> xc.MetricResult:
        s, m = np.asarray(data.get("scores")), np.asarray(data.get("similarities"))
        if s.shape != m.shape or s.size < 3:
            raise xc.InputError("scores and similarities need one value per pair (at least 3)")
        res = stats.spearmanr(s, m)
        return xc.MetricResult(name=self.name, value=float(res.statistic), n=int(s.size), details={"p_value": float(res.pvalue)})


class Separability(xc.Statistic):
    """Binned Bhattacharyya separability Delta of correct vs incorrect pairs (Algorithm 1), over a set
    of pairs (a study-level statistic)."""

    name = "pairx_separability"
    summary = "PAIR-X: binned Bhattacharyya separability of correct vs incorrect pairs at similar model scores"
    requires: ClassVar[frozenset[str]] = frozenset({"scores", "similarities", "correct"})

    class Config(xc.StrictConfig):
        bins: int = Field(10, ge=1)
        min_per_bin: int = Field(3, ge=2)

    def compute(self, **data: Any) -> xc.MetricResult:
        delta, details = binned_bhattacharyya(data.get("scores"), data.get("similarities"), data.get("correct"),
                                              bins=self.config.bins, min_per_bin=self.config.min_per_bin)
        return xc.MetricResult(name=self.name, value=delta, n=int(np.asarray(data.get("scores")).size), details={"bins": details})
