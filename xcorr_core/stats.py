"""Small statistics the core and the plugins share, in plain Python (no scipy at run time; the tests
check each against scipy): quantiles of the normal and Student-t distributions, the Wilson interval
of a proportion, the exact McNemar test of paired decisions, and mean intervals (Student-t over a
few runs, normal over many samples), and a seeded study's table of them. Depends on the standard library and the core's errors.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from statistics import NormalDist
from typing import Any

from .errors import InputError

__all__ = ["normal_quantile", "t_quantile", "wilson_interval", "mcnemar_exact", "t_interval", "normal_interval", "over_seeds"]


def normal_quantile(p: float) -> float:
    """The standard normal's p-quantile (``p`` in (0, 1))."""
    if not 0.0 < p < 1.0:
        raise InputError(f"p must be in (0, 1), got {p}")
    return NormalDist().inv_cdf(p)


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the regularised incomplete beta function (modified Lentz)."""
    tiny, qab, qap, qam = 1e-300, a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 400):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        step = d * c
        h *= step
        if abs(step - 1.0) < 1e-15:
            break
    return h


def _betainc(a: float, b: float, x: float) -> float:
    """Regularised incomplete beta I_x(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def _t_cdf(t: float, df: float) -> float:
    tail = 0.5 * _betainc(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t > 0 else tail


def t_quantile(p: float, df: float) -> float:
    """Student-t's p-quantile with ``df`` degrees of freedom (bisection on the exact CDF, to ~1e-12)."""
    if not 0.0 < p < 1.0:
        raise InputError(f"p must be in (0, 1), got {p}")
    if df <= 0:
        raise InputError(f"df must be > 0, got {df}")
    if p < 0.5:
        return -t_quantile(1.0 - p, df)
    lo, hi = 0.0, 1.0
    while _t_cdf(hi, df) < p:
        lo, hi = hi, hi * 2.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if _t_cdf(mid, df) < p:
            lo = mid
        else:
            hi = mid
        if hi - lo <= 1e-12 * max(1.0, hi):
            break
    return 0.5 * (lo + hi)


def wilson_interval(successes: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion (good coverage at small n); (0, 1) for n = 0."""
    if n == 0:
        return (0.0, 1.0)
    if not 0 <= successes <= n:
        raise InputError(f"need 0 <= successes <= n, got {successes} of {n}")
    z = normal_quantile(0.5 + level / 2)
    p = successes / n
    den = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return (max(0.0, centre - half), min(1.0, centre + half))


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value from the discordant counts ``b`` and ``c`` (two classifiers'
    decisions on the same queries: b right only for the first, c only for the second)."""
    if b < 0 or c < 0:
        raise InputError(f"discordant counts must be >= 0, got {b}, {c}")
    n = b + c
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(b, c) + 1)) / 2**n
    return min(1.0, 2 * tail)


def t_interval(values: Iterable[float], level: float = 0.95) -> tuple[float, float]:
    """``(mean, half-width)`` of a Student-t interval over a few values (e.g. runs with different
    seeds); NaNs are dropped; one value gives a NaN half-width, none ``(nan, nan)``."""
    xs = [float(x) for x in values if not math.isnan(float(x))]
    n = len(xs)
    if n == 0:
        return math.nan, math.nan
    m = sum(xs) / n
    if n < 2:
        return m, math.nan
    sd = math.sqrt(sum((x - m) ** 2 for x in xs) / (n - 1))
    return m, t_quantile(0.5 + level / 2, n - 1) * sd / math.sqrt(n)


def normal_interval(values: Iterable[float], level: float = 0.95) -> tuple[float, tuple[float, float] | None, int]:
    """Mean of the finite ``values``, its normal-approximation interval (many samples) and the count
    used; no interval below two values."""
    xs = [float(x) for x in values if math.isfinite(float(x))]
    n = len(xs)
    if n == 0:
        return math.nan, None, 0
    m = sum(xs) / n
    if n < 2:
        return m, None, n
    half = normal_quantile(0.5 + level / 2) * math.sqrt(sum((x - m) ** 2 for x in xs) / (n - 1)) / math.sqrt(n)
    return m, (m - half, m + half), n


def over_seeds(runs: Iterable[dict[str, Any]], by: str, groups: Iterable[str],
               values: dict[str, Callable[[dict[str, Any]], float]], level: float = 0.95) -> dict[str, dict[str, Any]]:
    """A seeded study's table: for each group (``run[by]``, in the order of ``groups``; groups with
    no run are left out), ``{"seeds": n, name: (mean, half-width)}`` with the `t_interval` over the
    runs of ``values[name](run)``. What the plugins' studies (CGC, ProtoKNN) report."""
    runs = list(runs)
    out: dict[str, dict[str, Any]] = {}
    for g in groups:
        rows = [r for r in runs if r.get(by) == g]
        if rows:
            out[g] = {"seeds": len(rows), **{name: t_interval([f(r) for r in rows], level) for name, f in values.items()}}
    return out

