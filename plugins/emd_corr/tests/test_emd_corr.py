"""EMD-Corr scores against an independent per-candidate reference with POT, invariants, errors."""
from __future__ import annotations

import numpy as np
import ot
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import xcorr_core as xc
from xcorr_emd_corr import emd_corr_scores
from xcorr_emd_corr.demo import mcnemar_exact


def _maps(n: int, c: int = 16, h: int = 3, w: int = 3, seed: int = 0, relu: bool = True) -> torch.Tensor:
    x = torch.randn(n, c, h, w, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return x.relu() if relu else x


def _reference(query: np.ndarray, cand: np.ndarray, eps: float, L: int) -> tuple[float, np.ndarray]:
    """The paper/code recipe for one candidate, written from the notes with numpy + POT."""
    C = query.shape[0]
    q, g = query.reshape(C, -1), cand.reshape(C, -1)
    hw = q.shape[1]
    mq, mg = q.mean(1), g.mean(1)
    den = np.linalg.norm(mq) * np.linalg.norm(mg) * hw
    u = q.T @ mg / den
    v = g.T @ mq / den
    u, v = u / (u.sum() + 1e-5), v / (v.sum() + 1e-5)
    qn = q / np.linalg.norm(q, axis=0, keepdims=True)
    gn = g / np.linalg.norm(g, axis=0, keepdims=True)
    sim = qn.T @ gn
    T = ot.sinkhorn(u, v, 1 - sim, eps, stopThr=1e-12, numItermax=100000)
    top = np.argsort(T.ravel())[::-1][:L]
    return float((T.ravel()[top] * sim.ravel()[top]).sum()), top


def test_scores_and_pairs_equal_the_pot_reference() -> None:
    q, cands = _maps(1, seed=1)[0], _maps(12, seed=2)
    out = emd_corr_scores(q, cands, eps=0.05, stop="marginal", tol=1e-12, max_iter=100000)
    for i in range(12):
        score, top = _reference(q.numpy(), cands[i].numpy(), 0.05, 5)
        assert float(out.scores[0, i]) == pytest.approx(score, rel=1e-6)
        flat = (out.pairs[0, i, :, 0] * 9 + out.pairs[0, i, :, 1]).numpy()
        assert set(flat.tolist()) == set(top.tolist())
    plan = out.solver.plan[0]
    for i in range(12):  # weights are the plan entries at the pairs, sims the cosines
        torch.testing.assert_close(out.flows[0, i], plan[i][out.pairs[0, i, :, 0], out.pairs[0, i, :, 1]])
        torch.testing.assert_close(out.scores[0, i], (out.flows[0, i] * out.similarities[0, i]).sum())


def test_authors_default_orders_like_a_converged_solver_on_real_features() -> None:
    """With the authors' loose stopping rule the top-20 order is that of a converged solve."""
    from xcorr_core.data import SynthBirds
    from xcorr_core.models import load_pretrained

    model = load_pretrained("birds")
    ds = SynthBirds("test", per_class=3, progress=False)
    fx = xc.FeatureExtractor(model, ["layer4"])
    maps = fx(ds.images[:51].float() / 255).maps["layer4"]
    fast = emd_corr_scores(maps[0], maps[1:])
    exact = emd_corr_scores(maps[0], maps[1:], stop="marginal", tol=1e-7, max_iter=10000)
    assert torch.equal(fast.scores[0].argsort(descending=True)[:20], exact.scores[0].argsort(descending=True)[:20])


@given(st.integers(0, 500), st.floats(0.1, 10.0))
def test_invariances(seed: int, scale: float) -> None:
    q, cands = _maps(1, seed=seed)[0], _maps(6, seed=seed + 1)
    base = emd_corr_scores(q, cands)
    perm = torch.randperm(6, generator=torch.Generator().manual_seed(seed))
    permuted = emd_corr_scores(q, cands[perm])
    torch.testing.assert_close(permuted.scores[0], base.scores[0][perm])
    scaled = emd_corr_scores(q * scale, cands * scale)  # cosines and normalised weights do not change
    torch.testing.assert_close(scaled.scores, base.scores, rtol=1e-6, atol=1e-9)


def test_batched_queries_equal_single_calls() -> None:
    qs, cands = _maps(3, seed=5), _maps(3 * 7, seed=6).reshape(3, 7, 16, 3, 3)
    batch = emd_corr_scores(qs, cands)
    for i in range(3):
        one = emd_corr_scores(qs[i], cands[i])
        torch.testing.assert_close(batch.scores[i], one.scores[0])
        assert torch.equal(batch.pairs[i], one.pairs[0])
    small_chunks = emd_corr_scores(qs, cands, chunk=2)
    torch.testing.assert_close(small_chunks.scores, batch.scores)


def test_reranker_component() -> None:
    rr = xc.create("reranker", "emd_corr", pairs=3)
    q, cands = _maps(1, seed=3)[0].float(), _maps(8, seed=4).float()
    cands[5] = q  # the query itself must rank first
    r = rr.rerank(q, cands)
    assert isinstance(r, xc.Ranking) and int(r.order[0]) == 5 and r.pairs.shape == (8, 3, 2)
    rs = rr.rerank(q[None].expand(2, -1, -1, -1), cands[None].expand(2, -1, -1, -1, -1))
    assert len(rs) == 2 and torch.equal(rs[1].order, r.order)
    with pytest.raises(xc.ConfigError, match="'eps'"):
        xc.create("reranker", "emd_corr", eps=0)


def test_clamped_weights_are_non_negative() -> None:
    from xcorr_emd_corr.emd import patch_weights

    q, g = _maps(1, relu=False, seed=8).flatten(2), _maps(4, relu=False, seed=9).flatten(2)[None]
    a, b = patch_weights(q, g, clamp_negative=True)
    assert bool((a >= 0).all()) and bool((b >= 0).all())
    a2, _ = patch_weights(q, g)
    assert bool((a2 < 0).any())  # the authors' variant keeps negatives on signed features


@pytest.mark.parametrize("query, cands, match", [
    (torch.full((4, 3, 3), float("nan")), torch.rand(5, 4, 3, 3), "NaN"),
    (torch.rand(4, 3, 3), torch.rand(5, 4, 3, 3).index_fill_(0, torch.tensor([2]), float("inf")), "NaN/inf"),
    (torch.rand(4, 3, 3), torch.rand(5, 6, 3, 3), "channels"),
    (torch.rand(4, 3, 3), torch.rand(4, 3, 3), "4 dimensions"),
    (torch.rand(2, 4, 3, 3), torch.rand(3, 5, 4, 3, 3), "queries"),
])
def test_bad_inputs(query, cands, match) -> None:
    with pytest.raises(xc.InputError, match=match):
        emd_corr_scores(query, cands)


def test_all_zero_candidate_gets_uniform_weights_not_nan() -> None:
    q, cands = _maps(1, seed=1)[0], _maps(3, seed=2)
    cands[1] = 0
    out = emd_corr_scores(q, cands)
    assert bool(torch.isfinite(out.scores).all()) and float(out.scores[0, 1]) == 0.0


def test_diversity_metric_by_hand() -> None:
    m = xc.create("metric", "explanation_diversity", top=2)
    ids = torch.tensor([[10, 11, 12], [10, 13, 14]])
    labels = torch.tensor([[1, 1, 0], [1, 0, 1]])
    r = m.compute(predictions=torch.tensor([1, 1]), neighbour_ids=ids, neighbour_labels=labels)
    # query 0 shows 10, 11; query 1 shows 10, 14 -> 3 distinct of 4
    assert r.value == 0.75 and r.details["distinct_images"] == 3


def test_mcnemar_exact_by_hand() -> None:
    assert mcnemar_exact(0, 5) == pytest.approx(2 / 32)
    assert mcnemar_exact(3, 3) == 1.0 and mcnemar_exact(0, 0) == 1.0
    assert mcnemar_exact(1, 9) == pytest.approx(2 * 11 / 1024)


def test_cells_path_equals_the_pot_reference() -> None:
    from xcorr_emd_corr import emd_corr_scores_cells

    q, cands = _maps(1, seed=1)[0], _maps(12, seed=2)
    cands[3, :, 1, 2] = 0  # a zero candidate cell
    out = emd_corr_scores_cells(q[None], xc.CellMaps.from_maps(cands[None]), eps=0.05, stop="marginal", tol=1e-12, max_iter=100000)
    for i in range(12):
        score, top = _reference(q.numpy(), cands[i].numpy(), 0.05, 5) if i != 3 else (None, None)
        if score is not None:
            assert float(out.scores[0, i]) == pytest.approx(score, rel=1e-6)
            assert set((out.pairs[0, i, :, 0] * 9 + out.pairs[0, i, :, 1]).tolist()) == set(top.tolist())


@given(st.integers(0, 500), st.integers(1, 3), st.integers(1, 9), st.booleans())
def test_cells_path_equals_maps_path(seed: int, g: int, n: int, clamp: bool) -> None:
    from xcorr_emd_corr import emd_corr_scores_cells

    q = _maps(g, c=8, h=2, w=3, seed=seed).float()
    cands = _maps(g * n, c=8, h=2, w=3, seed=seed + 1).float().unflatten(0, (g, n))
    a = emd_corr_scores(q, cands, clamp_negative=clamp)
    b = emd_corr_scores_cells(q, xc.CellMaps.from_maps(cands), clamp_negative=clamp)
    torch.testing.assert_close(b.scores, a.scores, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(b.solver.plan, a.solver.plan, rtol=1e-4, atol=1e-6)


def test_cells_path_bad_inputs() -> None:
    from xcorr_emd_corr import emd_corr_scores_cells

    cells = xc.CellMaps.from_maps(torch.rand(2, 5, 8, 3, 3))
    with pytest.raises(xc.InputError, match="G, C, H, W"):
        emd_corr_scores_cells(torch.rand(8, 3, 3), cells)
    with pytest.raises(xc.InputError, match="unit"):
        emd_corr_scores_cells(torch.rand(2, 7, 3, 3), cells)
    with pytest.raises(xc.InputError, match="unit"):
        emd_corr_scores_cells(torch.rand(1, 8, 3, 3), cells)


def test_pipeline_reads_cells_and_decides_as_with_maps(tmp_path) -> None:
    birds = xc.data.SynthBirds("train", per_class=4, num_classes=6, progress=False)
    test = xc.data.SynthBirds("test", per_class=2, num_classes=6, progress=False)
    model = xc.models.load_pretrained("birds")
    spec = {"shortlist": 12, "decision": {"k": 5}, "rerankers": [{"name": "emd_corr"}], "explainers": []}
    cells = xc.Pipeline({**spec, "maps": {"dtype": "float32"}}, model=model, work_dir=tmp_path / "c").fit(birds, progress=False)
    maps = xc.Pipeline({**spec, "maps": {"layout": "maps", "dtype": "float32"}}, model=model, work_dir=tmp_path / "m").fit(birds, progress=False)
    assert cells.store.layout == "cells" and maps.store.layout == "maps"
    a, b = cells.run(test, progress=False).methods["emd_corr"], maps.run(test, progress=False).methods["emd_corr"]
    assert torch.equal(a.predictions, b.predictions) and torch.equal(a.neighbour_ids, b.neighbour_ids)
