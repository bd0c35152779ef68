"""xcorr_core.stats against scipy (a dev dependency only) and hand-computed cases."""

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats as sp

from xcorr_core.errors import InputError
from xcorr_core.stats import mcnemar_exact, normal_interval, normal_quantile, t_interval, t_quantile, wilson_interval


@given(st.floats(0.001, 0.999), st.sampled_from([1, 2, 3, 4, 5, 9, 10, 29, 100, 1000]))
def test_t_quantile_matches_scipy(p: float, df: int) -> None:
    assert t_quantile(p, df) == pytest.approx(float(sp.t.ppf(p, df)), rel=1e-9, abs=1e-9)


@given(st.floats(1e-6, 1 - 1e-6))
def test_normal_quantile_matches_scipy(p: float) -> None:
    assert normal_quantile(p) == pytest.approx(float(sp.norm.ppf(p)), rel=1e-9, abs=1e-12)


@given(st.integers(1, 500).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n))), st.sampled_from([0.9, 0.95, 0.99]))
def test_wilson_matches_scipy(kn: tuple[int, int], level: float) -> None:
    k, n = kn
    ref = sp.binomtest(k, n).proportion_ci(confidence_level=level, method="wilson")
    lo, hi = wilson_interval(k, n, level)
    assert lo == pytest.approx(ref.low, abs=1e-12) and hi == pytest.approx(ref.high, abs=1e-12)


@given(st.integers(0, 60), st.integers(0, 60))
def test_mcnemar_exact_is_the_binomial_test_of_the_discordant_pairs(b: int, c: int) -> None:
    ref = 1.0 if b + c == 0 else sp.binomtest(b, b + c, 0.5).pvalue
    assert mcnemar_exact(b, c) == pytest.approx(ref, rel=1e-9)


def test_t_interval_matches_scipy_and_hand_values() -> None:
    xs = [0.61, 0.58, 0.66, 0.63]
    m, half = t_interval(xs)
    lo, hi = sp.t.interval(0.95, len(xs) - 1, loc=sum(xs) / 4, scale=sp.sem(xs))
    assert m == pytest.approx(sum(xs) / 4) and half == pytest.approx((hi - lo) / 2, rel=1e-9)
    assert all(math.isnan(v) for v in t_interval([]))
    assert math.isnan(t_interval([0.5])[1]) and t_interval([0.5, float("nan"), 0.7])[0] == pytest.approx(0.6)
    assert t_quantile(0.975, 1) == pytest.approx(12.706204736, rel=1e-9)  # the table value the old helper rounded to 12.706


def test_normal_interval_and_errors() -> None:
    m, ci, n = normal_interval([1.0, 2.0, 3.0, float("inf")])
    assert (m, n) == (2.0, 3) and ci[1] - m == pytest.approx(sp.norm.ppf(0.975) * 1.0 / math.sqrt(3))
    assert normal_interval([4.0]) == (4.0, None, 1)
    for bad in (lambda: t_quantile(1.0, 3), lambda: t_quantile(0.5, 0), lambda: wilson_interval(5, 3), lambda: mcnemar_exact(-1, 2)):
        with pytest.raises(InputError):
            bad()


def test_over_seeds_groups_runs_and_takes_t_intervals() -> None:
    import math

    from xcorr_core.stats import over_seeds, t_interval

    runs = [{"mode": "a", "x": 1.0}, {"mode": "b", "x": 5.0}, {"mode": "a", "x": 3.0}, {"mode": "a", "x": 2.0}]
    table = over_seeds(runs, "mode", ["a", "c", "b"], {"x": lambda r: r["x"], "twice": lambda r: 2 * r["x"]})
    assert list(table) == ["a", "b"]  # in the given order; a group with no run is left out
    assert table["a"]["seeds"] == 3 and table["a"]["x"] == t_interval([1.0, 3.0, 2.0])
    assert table["a"]["x"][0] == 2.0 and table["a"]["twice"][0] == 4.0
    assert table["b"]["seeds"] == 1 and table["b"]["x"][0] == 5.0 and math.isnan(table["b"]["x"][1])
