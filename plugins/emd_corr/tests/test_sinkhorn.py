"""The batched log-domain Sinkhorn against POT and against the authors' own iteration."""
from __future__ import annotations

import numpy as np
import ot
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from xcorr_core.errors import InputError
from xcorr_emd_corr import sinkhorn, sinkhorn_log, sinkhorn_scaling

SOLVERS = [sinkhorn_log, sinkhorn_scaling]


def _problem(G: int, P: int, n: int, m: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    a = torch.rand(G, P, n, generator=g, dtype=torch.float64) + 0.05
    b = torch.rand(G, P, m, generator=g, dtype=torch.float64) + 0.05
    a, b = a / a.sum(-1, keepdim=True), b / b.sum(-1, keepdim=True)
    cost = torch.rand(G, P, n, m, generator=g, dtype=torch.float64) * 2
    return a, b, cost


@pytest.mark.parametrize("solver", SOLVERS)
# eps >= 0.1 here: at eps = 0.05 some random costs need far more than 20,000 iterations to reach
# 1e-11 (for POT as for us); eps = 0.05 is covered by the authors'-iteration and EMD tests below.
@given(st.integers(1, 3), st.integers(1, 4), st.integers(2, 9), st.integers(2, 9), st.sampled_from([0.1, 0.5, 1.0]), st.integers(0, 999))
def test_plans_equal_pot_sinkhorn(solver, G, P, n, m, eps, seed) -> None:
    a, b, cost = _problem(G, P, n, m, seed)
    res = solver(a, b, cost, eps, max_iter=20000, tol=1e-11, stop="marginal")
    assert bool(res.converged.all())
    for gi in range(G):
        for p in range(P):
            ref = ot.sinkhorn(a[gi, p].numpy(), b[gi, p].numpy(), cost[gi, p].numpy(), eps, stopThr=1e-12, numItermax=20000)
            np.testing.assert_allclose(res.plan[gi, p].numpy(), ref, atol=1e-9, rtol=1e-6)


@pytest.mark.parametrize("eps", [0.01, 0.003])
def test_small_eps_is_stable_and_approaches_exact_emd(eps) -> None:
    a, b, cost = _problem(1, 3, 7, 7, 1)
    res = sinkhorn_log(a.float(), b.float(), cost.float(), eps, max_iter=5000, tol=1e-6, stop="marginal")
    assert bool(torch.isfinite(res.plan).all())
    for p in range(3):
        exact = ot.emd2(a[0, p].numpy(), b[0, p].numpy(), cost[0, p].numpy())
        ours = float((res.plan[0, p].double() * cost[0, p]).sum())
        assert ours == pytest.approx(exact, abs=10 * eps)  # entropic bias shrinks with eps
        np.testing.assert_allclose(res.plan[0, p].sum(1).numpy(), a[0, p].numpy(), atol=1e-5)
    # the plain scaling iteration underflows here: K = exp(-cost / eps) is 0 in float32 ...
    assert float(torch.exp(-cost.float().max() / eps)) == 0.0
    # ... so the dispatcher picks the log-domain solver, and the scaling one is only used when safe
    auto = sinkhorn(a.float(), b.float(), cost.float(), eps, max_iter=5000, tol=1e-6, stop="marginal")
    torch.testing.assert_close(auto.plan, res.plan)
    safe = sinkhorn(a.float(), b.float(), cost.float(), 0.1, max_iter=5000, tol=1e-6, stop="marginal")
    torch.testing.assert_close(safe.plan, sinkhorn_scaling(a.float(), b.float(), cost.float(), 0.1, max_iter=5000, tol=1e-6, stop="marginal").plan)


def _authors_loop(u: np.ndarray, v: np.ndarray, K: np.ndarray, max_iter: int, tol: float) -> np.ndarray:
    """The authors' iteration, literally: batch [P, n, m], stop on the batch mean of |r - r_prev|."""
    r = np.ones_like(u)
    c = np.ones_like(v)
    for _ in range(max_iter):
        r0 = r
        r = u / np.einsum("pij,pj->pi", K, c)
        c = v / np.einsum("pij,pi->pj", K, r)
        if np.abs(r - r0).mean() < tol:
            break
    return r[:, :, None] * K * c[:, None, :]


@pytest.mark.parametrize("solver", SOLVERS)
@given(st.integers(1, 5), st.sampled_from([0.05, 0.1]), st.sampled_from([0.1, 1e-3]), st.integers(0, 999))
def test_authors_rule_reproduces_their_iteration(solver, P, eps, tol, seed) -> None:
    a, b, cost = _problem(2, P, 6, 5, seed)
    res = solver(a, b, cost, eps, max_iter=100, tol=tol, stop="authors")
    for gi in range(2):  # each group (query) stops on its own batch mean
        ref = _authors_loop(a[gi].numpy(), b[gi].numpy(), np.exp(-cost[gi].numpy() / eps), 100, tol)
        np.testing.assert_allclose(res.plan[gi].numpy(), ref, rtol=1e-9, atol=1e-14)


@pytest.mark.parametrize("solver", SOLVERS)
def test_zero_mass_rows_get_no_flow(solver) -> None:
    a, b, cost = _problem(1, 1, 4, 4, 0)
    a[0, 0, 0] = 0
    a = a / a.sum(-1, keepdim=True)
    res = solver(a, b, cost, 0.1, max_iter=2000, tol=1e-10, stop="marginal")
    assert float(res.plan[0, 0, 0].abs().max()) == 0.0 and bool(torch.isfinite(res.plan).all())


def test_errors() -> None:
    a, b, cost = _problem(1, 2, 3, 3, 0)
    with pytest.raises(InputError, match="non-negative"):
        sinkhorn_log(-a, b, cost, 0.1)
    with pytest.raises(InputError, match="eps"):
        sinkhorn_log(a, b, cost, 0.0)
    with pytest.raises(InputError, match="shape"):
        sinkhorn_log(a[:, :1], b, cost, 0.1)
    bad = cost.clone()
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(InputError, match="NaN"):
        sinkhorn_log(a, b, bad, 0.1)
    with pytest.raises(InputError, match="stop"):
        sinkhorn_log(a, b, cost, 0.1, stop="never")  # type: ignore[arg-type]


def test_marginal_rule_has_its_own_default_and_rejects_tolerances_that_stop_at_once() -> None:
    from xcorr_emd_corr.sinkhorn import DEFAULT_TOL

    g = torch.Generator().manual_seed(4)
    n = 49  # a 7 x 7 grid: masses about 1/49, all below the authors' 0.1
    a = torch.rand(1, 1, n, generator=g, dtype=torch.float64) + 0.5
    b = torch.rand(1, 1, n, generator=g, dtype=torch.float64) + 0.5
    a, b = a / a.sum(), b / b.sum()
    cost = torch.rand(1, 1, n, n, generator=g, dtype=torch.float64)
    for solver in (sinkhorn_scaling, sinkhorn_log):
        with pytest.raises(InputError, match="largest mass"):
            solver(a, b, cost, 0.05, stop="marginal", tol=0.1)
        out = solver(a, b, cost, 0.05, stop="marginal", max_iter=1000)  # the rule's own default
        row_err = float((out.plan.sum(-1) - a).abs().max())
        assert DEFAULT_TOL["marginal"] == 1e-6 and row_err < 1e-6 and int(out.iterations[0]) > 1 and bool(out.converged[0])
        ref = ot.sinkhorn(a[0, 0].numpy(), b[0, 0].numpy(), cost[0, 0].numpy(), 0.05, stopThr=1e-12, numItermax=100000)
        assert np.abs(out.plan[0, 0].numpy() - ref).max() < 1e-5
        # the authors' rule keeps 0.1 as its default, as their code
        assert int(solver(a, b, cost, 0.05).iterations[0]) == int(solver(a, b, cost, 0.05, tol=0.1).iterations[0])
    with pytest.raises(InputError, match="tol must be > 0"):
        sinkhorn(a, b, cost, 0.05, tol=0.0)


def test_reranker_marginal_rule_does_not_stop_at_once() -> None:
    import xcorr_core as xc

    rr = xc.create("reranker", "emd_corr", stop="marginal")
    assert rr.config.tol is None
    g = torch.Generator().manual_seed(0)
    q, c = torch.rand(16, 7, 7, generator=g), torch.rand(6, 16, 7, 7, generator=g)
    from xcorr_emd_corr import emd_corr_scores

    out = emd_corr_scores(q, c, stop="marginal")
    assert int(out.solver.iterations[0]) > 2
    ranking = rr.rerank(q, c)
    torch.testing.assert_close(ranking.scores, out.scores[0])
