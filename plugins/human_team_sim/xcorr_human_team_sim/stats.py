"""Statistics used by both interaction models: Mann-Whitney U, multiple-comparison
corrections, Wilson intervals. Thin, documented wrappers over scipy where scipy has it."""
from __future__ import annotations

from typing import Literal, NamedTuple

import numpy as np
from scipy import stats

from xcorr_core.errors import InputError
from xcorr_core.stats import wilson_interval

__all__ = ["mann_whitney", "MannWhitney", "EXACT_MAX_PAIRS", "adjust_pvalues", "wilson", "MWMethod", "Correction"]

MWMethod = Literal["auto", "exact", "asymptotic", "permutation"]
Correction = Literal["none", "bonferroni", "holm", "bh"]

#: largest n_x * n_y for the exact null distribution of U: scipy's recursion grows quadratically in
#: it and loses its precision (p = NaN) well before 600 x 600 (timings: docs/benchmarks.md)
EXACT_MAX_PAIRS = 40_000


class MannWhitney(NamedTuple):
    """A two-sided Mann-Whitney U test: U of x, p, and the method that gave p
    (``"exact"``, ``"asymptotic"`` or ``"permutation"``; never ``"auto"``)."""

    u: float
    p: float
    method: str


def mann_whitney(x: np.ndarray, y: np.ndarray, method: MWMethod = "auto", *, n_resamples: int = 20000,
                 seed: int = 0) -> MannWhitney:
    """Two-sided Mann-Whitney U test of samples ``x`` `[n_x]` and ``y`` `[n_y]`.

    ``"auto"`` (default): the exact null distribution of U where it is exact and cheap — no ties
    and ``n_x * n_y <= EXACT_MAX_PAIRS`` — and gives a finite p; otherwise the normal approximation
    with tie correction (and continuity correction). Per-user accuracies k/30 tie, so a human
    study is normally tested asymptotically. ``"exact"``: scipy's exact distribution, which
    ignores ties (the value this plugin reported before ``auto``); refused above
    ``EXACT_MAX_PAIRS``. ``"asymptotic"``: the normal approximation. ``"permutation"``: a
    permutation test of U (exact enumeration when small, else ``n_resamples`` seeded resamples),
    which handles ties. The result names the method that gave p.
    """
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if x.size == 0 or y.size == 0:
        raise InputError("Mann-Whitney U needs two non-empty samples")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise InputError("Mann-Whitney U needs finite values; the samples hold NaN or inf")
    if method not in ("auto", "exact", "asymptotic", "permutation"):
        raise InputError(f"method must be 'auto', 'exact', 'asymptotic' or 'permutation', got {method!r}")
    pairs = x.size * y.size
    if method == "exact" and pairs > EXACT_MAX_PAIRS:
        raise InputError(f"the exact Mann-Whitney test of {x.size} x {y.size} values is too large (limit "
                         f"{EXACT_MAX_PAIRS:,} pairs: it takes minutes and scipy's p loses precision); use 'auto' or 'asymptotic'")
    if method == "permutation":
        res = stats.mannwhitneyu(x, y, method=stats.PermutationMethod(n_resamples=n_resamples, rng=seed))
        return MannWhitney(float(res.statistic), float(res.pvalue), "permutation")
    if method == "auto":
        ties = np.unique(np.concatenate([x, y])).size < x.size + y.size
        method = "exact" if not ties and pairs <= EXACT_MAX_PAIRS else "asymptotic"
        if method == "exact":
            res = stats.mannwhitneyu(x, y, method="exact")
            if np.isfinite(res.pvalue):
                return MannWhitney(float(res.statistic), float(res.pvalue), "exact")
            method = "asymptotic"
    res = stats.mannwhitneyu(x, y, method=method)
    if not np.isfinite(res.pvalue):
        raise InputError(f"the {method} Mann-Whitney test gave p = {res.pvalue} for {x.size} x {y.size} values; use 'auto'")
    return MannWhitney(float(res.statistic), float(res.pvalue), method)


def adjust_pvalues(p: np.ndarray | list[float], method: Correction = "holm") -> np.ndarray:
    """Family-wise (Bonferroni, Holm) or false-discovery-rate (Benjamini-Hochberg) adjusted p-values."""
    p = np.asarray(p, dtype=float)
    m = p.size
    if method == "none" or m == 0:
        return p.copy()
    if np.any((p < 0) | (p > 1)):
        raise InputError("p-values must lie in [0, 1]")
    order = np.argsort(p, kind="stable")
    ps = p[order]
    if method == "bonferroni":
        adj = np.minimum(1.0, ps * m)
    elif method == "holm":
        adj = np.minimum(1.0, np.maximum.accumulate(ps * (m - np.arange(m))))
    elif method == "bh":
        adj = np.minimum(1.0, np.minimum.accumulate((ps * m / np.arange(1, m + 1))[::-1])[::-1])
    else:
        raise InputError(f"correction must be 'none', 'bonferroni', 'holm' or 'bh', got {method!r}")
    out = np.empty(m)
    out[order] = adj
    return out


def wilson(successes: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion (`xcorr_core.stats.wilson_interval`)."""
    return wilson_interval(successes, n, level)
