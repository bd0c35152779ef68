"""Statistics used by both interaction models: Mann-Whitney U, multiple-comparison
corrections, Wilson intervals. Thin, documented wrappers over scipy where scipy has it."""
from __future__ import annotations

import math
from typing import Literal

import numpy as np
from scipy import stats

from xcorr_core.errors import InputError

__all__ = ["mann_whitney", "adjust_pvalues", "wilson", "MWMethod", "Correction"]

MWMethod = Literal["exact", "asymptotic", "permutation"]
Correction = Literal["none", "bonferroni", "holm", "bh"]


def mann_whitney(x: np.ndarray, y: np.ndarray, method: MWMethod = "exact", *, n_resamples: int = 20000,
                 seed: int = 0) -> tuple[float, float]:
    """Two-sided Mann-Whitney U test of samples ``x`` and ``y``: returns ``(U of x, p)``.

    ``"exact"``: scipy's exact null distribution of U (it does not correct for ties, which
    per-user accuracies k/30 have); ``"asymptotic"``: normal approximation with tie
    correction; ``"permutation"``: a permutation test of U (exact enumeration when small,
    else ``n_resamples`` seeded resamples), which handles ties.
    """
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if x.size == 0 or y.size == 0:
        raise InputError("Mann-Whitney U needs two non-empty samples")
    if method == "permutation":
        res = stats.mannwhitneyu(x, y, method=stats.PermutationMethod(n_resamples=n_resamples, rng=seed))
    elif method in ("exact", "asymptotic"):
        res = stats.mannwhitneyu(x, y, method=method)
    else:
        raise InputError(f"method must be 'exact', 'asymptotic' or 'permutation', got {method!r}")
    return float(res.statistic), float(res.pvalue)


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
    """Wilson score interval of a binomial proportion."""
    if n == 0:
        return (0.0, 1.0)
    z = float(stats.norm.ppf(0.5 + level / 2))
    p = successes / n
    den = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return (max(0.0, centre - half), min(1.0, centre + half))
