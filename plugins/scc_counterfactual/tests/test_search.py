"""The greedy search against brute force, its closed form against the generic path, and its invariants."""
from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

import xcorr_core as xc
from xcorr_scc_counterfactual import PoolLinear, apply_edits, search_counterfactual, semantic_log_likelihood


class _ConvHead(nn.Module):
    """A small non-linear g: 1x1 conv + ReLU + pooling + linear."""

    def __init__(self, d: int, c: int, seed: int) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.conv = nn.Conv2d(d, 8, 1)
        self.fc = nn.Linear(8, c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.conv(x)).mean((2, 3)))


def _problem(seed: int, d: int = 5, h: int = 3, w: int = 3, n: int = 2, c: int = 4, daux: int = 3):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(d, h, w, generator=g)
    ds = torch.randn(n, d, h, w, generator=g)
    uq, ud = torch.randn(daux, h, w, generator=g), torch.randn(n, daux, h, w, generator=g)
    return q, ds, uq, ud


def _brute_force_first(q, ds, head, target, log_sem, lam):
    """Every (query cell, distractor cell) pair by explicit loops: the edited map and g on it."""
    d, h, w = q.shape
    best, arg = -math.inf, None
    for i in range(h * w):
        for k in range(ds.shape[0]):
            for j in range(h * w):
                x = q.clone().flatten(1)
                x[:, i] = ds[k].flatten(1)[:, j]
                lp = torch.log_softmax(head(x.view(1, d, h, w)), 1)[0, target].item()
                s = lp + (lam * log_sem[i, k * h * w + j].item() if log_sem is not None else 0.0)
                if s > best:
                    best, arg = s, (i, k, j)
    return best, arg


def _target_not_predicted(head, q, c):
    pred = int(head(q[None]).argmax())
    return (pred + 1) % c


@given(st.integers(0, 10_000), st.sampled_from([0.0, 0.4, 1.5]), st.booleans())
def test_first_edit_is_the_brute_force_argmax(seed, lam, linear):
    q, ds, uq, ud = _problem(seed)
    torch.manual_seed(seed)
    head = PoolLinear(nn.Linear(5, 4)).eval() if linear else _ConvHead(5, 4, seed).eval()
    target = _target_not_predicted(head, q, 4)
    log_sem = semantic_log_likelihood(uq, ud, 0.1) if lam > 0 else None
    res = search_counterfactual(q, ds, head, target, log_semantic=log_sem, semantic_weight=lam, max_edits=1,
                                linear_head=(head.fc.weight, head.fc.bias) if linear else None)
    best, (i, k, j) = _brute_force_first(q, ds, head, target, log_sem, lam)
    e = res.edits[0]
    assert e.score == pytest.approx(best, abs=1e-4)
    assert (e.query_cell, e.distractor, e.distractor_cell) == (i, k, j)


@given(st.integers(0, 10_000), st.sampled_from([0.0, 0.4]), st.sampled_from([1.0, 0.3]))
def test_closed_form_equals_generic_path(seed, lam, prefilter):
    q, ds, uq, ud = _problem(seed, d=6, h=4, w=4, n=3, c=5)
    torch.manual_seed(seed)
    head = PoolLinear(nn.Linear(6, 5)).eval()
    target = _target_not_predicted(head, q, 5)
    log_sem = semantic_log_likelihood(uq, ud, 0.1) if (lam > 0 or prefilter < 1) else None
    kw = dict(log_semantic=log_sem, semantic_weight=lam, prefilter=prefilter, stop_at_flip=False, max_edits=6)
    a = search_counterfactual(q, ds, head, target, linear_head=(head.fc.weight, head.fc.bias), **kw)
    b = search_counterfactual(q, ds, head, target, path="generic", chunk=7, **kw)
    assert a.path == "closed_form" and b.path == "generic"
    assert [(e.query_cell, e.distractor, e.distractor_cell) for e in a.edits] == [(e.query_cell, e.distractor, e.distractor_cell) for e in b.edits]
    assert [e.score for e in a.edits] == pytest.approx([e.score for e in b.edits], abs=1e-4)
    assert a.prob_target == pytest.approx(b.prob_target, abs=1e-5)


@given(st.integers(0, 10_000), st.sampled_from([0.0, 0.4]), st.sampled_from([1.0, 0.25]), st.booleans())
def test_edits_reapplied_flip_the_decision_and_no_cell_is_reused(seed, lam, prefilter, linear):
    q, ds, uq, ud = _problem(seed, d=6, h=4, w=4, n=3, c=5)
    torch.manual_seed(seed)
    head = PoolLinear(nn.Linear(6, 5)).eval() if linear else _ConvHead(6, 5, seed).eval()
    target = _target_not_predicted(head, q, 5)
    log_sem = semantic_log_likelihood(uq, ud, 0.1) if (lam > 0 or prefilter < 1) else None
    res = search_counterfactual(q, ds, head, target, log_semantic=log_sem, semantic_weight=lam, prefilter=prefilter,
                                linear_head=(head.fc.weight, head.fc.bias) if linear else None)
    qcells = [e.query_cell for e in res.edits]
    dcells = [(e.distractor, e.distractor_cell) for e in res.edits]
    assert len(set(qcells)) == len(qcells) and len(set(dcells)) == len(dcells)
    edited = apply_edits(q, ds, res.edits)
    pred = int(head(edited[None]).argmax())
    if res.success:
        assert pred == target and res.reason == "flipped"
        before = apply_edits(q, ds, res.edits[:-1])  # greedy stops at the first flip
        assert int(head(before[None]).argmax()) != target
    else:
        assert res.reason in ("max_edits", "no_candidates") and pred != target
    with torch.no_grad():
        assert res.prob_target[-1] == pytest.approx(float(torch.softmax(head(edited[None]), 1)[0, target]), abs=1e-5)


def test_prefilter_keeps_the_global_top_fraction():
    q, ds, uq, ud = _problem(3, h=4, w=4, n=2)
    head = PoolLinear(nn.Linear(5, 4)).eval()
    ls = semantic_log_likelihood(uq, ud, 0.1)
    res = search_counterfactual(q, ds, head, _target_not_predicted(head, q, 4), log_semantic=ls, prefilter=0.1, max_edits=1,
                                linear_head=(head.fc.weight, head.fc.bias))
    assert res.candidates == math.floor(0.1 * 16 * 32)  # the authors' int(...)
    e = res.edits[0]
    threshold = ls.flatten().topk(res.candidates).values.min()
    assert ls[e.query_cell, e.distractor * 16 + e.distractor_cell] >= threshold


def test_semantic_likelihood_is_a_softmax_over_all_distractor_cells():
    _, _, uq, ud = _problem(1, n=3)
    ls = semantic_log_likelihood(uq, ud, 0.1)
    assert ls.shape == (9, 27)
    assert torch.allclose(ls.exp().sum(1), torch.ones(9), atol=1e-5)
    a = uq[:, 1, 2] / uq[:, 1, 2].norm()
    b = ud[2, :, 0, 1] / ud[2, :, 0, 1].norm()
    all_b = torch.nn.functional.normalize(ud.permute(0, 2, 3, 1).reshape(27, -1), dim=1)
    expect = (a @ b) / 0.1 - torch.logsumexp(all_b @ a / 0.1, 0)
    assert ls[1 * 3 + 2, 2 * 9 + 0 * 3 + 1] == pytest.approx(float(expect), abs=1e-5)


def test_failure_is_reported_not_raised():
    q, ds, _, _ = _problem(5)
    head = PoolLinear(nn.Linear(5, 4)).eval()
    with torch.no_grad():
        head.fc.weight.zero_()
        head.fc.bias.copy_(torch.tensor([5.0, 0, 0, 0]))  # class 0 whatever the features: never flips
    res = search_counterfactual(q, ds, head, 2, max_edits=3, linear_head=(head.fc.weight, head.fc.bias))
    assert not res.success and res.reason == "max_edits" and len(res.edits) == 3
    res = search_counterfactual(q, ds[:1], head, 2, linear_head=(head.fc.weight, head.fc.bias))
    assert not res.success and res.reason == "no_candidates" and len(res.edits) == 9  # every cell used once


def test_bad_inputs_get_clear_errors():
    q, ds, uq, ud = _problem(0)
    head = PoolLinear(nn.Linear(5, 4)).eval()
    t = _target_not_predicted(head, q, 4)
    with pytest.raises(xc.InputError, match="differ"):
        search_counterfactual(q, torch.randn(2, 5, 4, 4), head, t)
    with pytest.raises(xc.InputError, match="n >= 1"):
        search_counterfactual(q, ds[:0], head, t)
    bad = q.clone()
    bad[0, 0, 0] = float("nan")
    with pytest.raises(xc.InputError, match="NaN"):
        search_counterfactual(bad, ds, head, t)
    with pytest.raises(xc.InputError, match="pre-filter"):
        search_counterfactual(q, ds, head, t, prefilter=0.5)
    with pytest.raises(xc.InputError, match="log_semantic"):
        search_counterfactual(q, ds, head, t, log_semantic=torch.zeros(9, 9))
    with pytest.raises(xc.InputError, match="already predicts"):
        search_counterfactual(q, ds, head, int(head(q[None]).argmax()))
    with pytest.raises(xc.InputError, match="training mode"):
        search_counterfactual(q, ds, PoolLinear(nn.Linear(5, 4)).train(), t)
    with pytest.raises(xc.InputError, match="closed_form"):
        search_counterfactual(q, ds, _ConvHead(5, 4, 0).eval(), t, path="closed_form")


@given(st.integers(0, 10_000), st.sampled_from([0.0, 0.4]), st.sampled_from([1.0, 0.3]), st.sampled_from([5, 1000]))
def test_first_linear_path_equals_generic_path(seed, lam, prefilter, chunk):
    from xcorr_scc_counterfactual.split import first_linear_of

    q, ds, uq, ud = _problem(seed, d=6, h=4, w=4, n=3, c=5)
    torch.manual_seed(seed)
    head = nn.Sequential(nn.Flatten(), nn.Linear(96, 16), nn.ReLU(), nn.Dropout(), nn.Linear(16, 5)).eval()
    fl = first_linear_of(head, (6, 4, 4))
    assert fl is not None and fl[0].shape == (16, 6, 16)
    assert torch.equal(fl[0][5, 2], head[1].weight[:, 2 * 16 + 5])  # block of cell 5, channel 2
    target = _target_not_predicted(head, q, 5)
    log_sem = semantic_log_likelihood(uq, ud, 0.1) if (lam > 0 or prefilter < 1) else None
    kw = dict(log_semantic=log_sem, semantic_weight=lam, prefilter=prefilter, stop_at_flip=False, max_edits=6, chunk=chunk)
    a = search_counterfactual(q, ds, head, target, first_linear=fl, **kw)
    b = search_counterfactual(q, ds, head, target, path="generic", **kw)
    assert a.path == "first_linear" and b.path == "generic"
    assert [(e.query_cell, e.distractor, e.distractor_cell) for e in a.edits] == [(e.query_cell, e.distractor, e.distractor_cell) for e in b.edits]
    assert [e.score for e in a.edits] == pytest.approx([e.score for e in b.edits], abs=1e-4)
    assert a.prob_target == pytest.approx(b.prob_target, abs=1e-5)


@pytest.mark.parametrize("scale", [1.0, 30.0, 3000.0])  # 3000: logits far apart, the factorised sum underflows
def test_closed_form_factorised_scores_equal_direct_scores(scale: float) -> None:
    from xcorr_scc_counterfactual.scorers import _ClosedForm

    g = torch.Generator().manual_seed(3)
    hw, n, d, c = 9, 4 * 9, 6, 5
    cur, dcells = torch.randn(hw, d, generator=g), torch.randn(n, d, generator=g)
    weight, bias = scale * torch.randn(c, d, generator=g), torch.randn(c, generator=g)
    sc = _ClosedForm(weight, bias, cur, dcells, target=2, chunk=7)
    ci, cj = torch.arange(hw).repeat_interleave(n), torch.arange(n).repeat(hw)
    for step in range(3):  # also after edits, which change z and wq
        direct = sc._score_direct(ci, cj)
        fast = sc.score(ci, cj)
        assert torch.isfinite(direct).all()
        assert torch.allclose(fast, direct, rtol=1e-5, atol=1e-5 * scale)
        # by hand: the log-softmax of the edited map's logits at the target
        i, j = int(ci[5 * step + 1]), int(cj[5 * step + 1])
        edited = cur.clone()
        edited[i] = dcells[j]
        ref = torch.log_softmax(edited.mean(0) @ weight.T + bias, 0)[2]
        assert math.isclose(float(fast[5 * step + 1]), float(ref), rel_tol=1e-4, abs_tol=1e-4 * scale)
        sc.apply(i, j)
        cur = edited


def test_prefilter_keeps_the_authors_count_and_ranking_by_hand() -> None:
    from xcorr_scc_counterfactual import prefilter_candidates

    # 2 query cells x 4 distractor cells; 30 % of 8 = 2.4 -> the authors' int keeps 2, ceil 3
    cos = torch.tensor([[0.9, 0.1, 0.8, 0.2],
                        [0.3, 0.85, 0.0, 0.05]])
    assert prefilter_candidates(cos, 0.3).tolist() == [0, 5]  # 0.9 (0, 0) and 0.85 (1, 1), flat i * 4 + j
    assert prefilter_candidates(cos, 0.3, "ceil").tolist() == [0, 2, 5]  # + 0.8 (0, 2)
    # the two rankings differ: row 0's cosines are all high (they share its softmax mass), row 1 has one
    # clear match; by the authors' raw cosine row 0 takes both places, by log-softmax row 1's match wins one
    cos2 = torch.tensor([[0.90, 0.88, 0.87, 0.86],
                         [0.50, 0.10, 0.10, 0.10]])
    assert prefilter_candidates(cos2, 0.25).tolist() == [0, 1]
    assert prefilter_candidates(torch.log_softmax(cos2 / 0.1, dim=1), 0.25).tolist() == [0, 4]
    assert prefilter_candidates(cos, 0.01).tolist() == [0]  # at least one


def test_prefilter_by_cosine_differs_from_log_softmax_in_search() -> None:
    from xcorr_scc_counterfactual import semantic_cosine, semantic_log_likelihood

    g = torch.Generator().manual_seed(5)
    d, h, w, n, c = 4, 2, 2, 3, 3
    q, ds = torch.randn(d, h, w, generator=g), torch.randn(n, d, h, w, generator=g)
    aq, ad = torch.randn(3, h, w, generator=g), torch.randn(n, 3, h, w, generator=g)
    head = PoolLinear(nn.Linear(d, c)).eval()
    target = (int(head(q[None]).argmax()) + 1) % c
    cos, ls = semantic_cosine(aq, ad), semantic_log_likelihood(aq, ad, 0.1)
    kw = dict(log_semantic=ls, semantic_weight=0.0, prefilter=0.3, stop_at_flip=False, max_edits=1)
    by_cos = search_counterfactual(q, ds, head, target, prefilter_key=cos, **kw)
    ceil = search_counterfactual(q, ds, head, target, prefilter_key=cos, prefilter_rounding="ceil", **kw)
    assert by_cos.candidates == int(0.3 * 4 * 12) == 14 and ceil.candidates == 15
    # the single edit is the best-scoring pair among the kept ones
    kept = set(prefilter_candidates_ref(cos, 14))
    e = by_cos.edits[0]
    assert e.query_cell * 12 + e.distractor * 4 + e.distractor_cell in kept


def prefilter_candidates_ref(key: torch.Tensor, keep: int) -> list[int]:
    flat = key.flatten().tolist()
    return sorted(range(len(flat)), key=lambda k: -flat[k])[:keep]


@given(st.integers(0, 10_000), st.sampled_from([0.0, 0.4]), st.sampled_from([1.0, 0.1]))
def test_closed_form_runs_out_of_candidates_like_the_generic_path(seed, lam, prefilter):
    """The closed form masks used candidates in place instead of compacting its lists: run to the end (every
    candidate used up) and the edits, scores and the reason must equal the compacting generic path's."""
    q, ds, uq, ud = _problem(seed, d=4, h=3, w=3, n=2, c=3)
    torch.manual_seed(seed)
    head = PoolLinear(nn.Linear(4, 3)).eval()
    target = _target_not_predicted(head, q, 3)
    log_sem = semantic_log_likelihood(uq, ud, 0.1) if (lam > 0 or prefilter < 1) else None
    kw = dict(log_semantic=log_sem, semantic_weight=lam, prefilter=prefilter, stop_at_flip=False)
    a = search_counterfactual(q, ds, head, target, linear_head=(head.fc.weight, head.fc.bias), **kw)
    b = search_counterfactual(q, ds, head, target, path="generic", chunk=5, **kw)
    assert a.path == "closed_form" and b.path == "generic"
    assert a.reason == b.reason and (a.reason != "max_edits" and len(a.edits) <= 9)
    assert [(e.query_cell, e.distractor, e.distractor_cell) for e in a.edits] == [(e.query_cell, e.distractor, e.distractor_cell) for e in b.edits]
    assert [e.score for e in a.edits] == pytest.approx([e.score for e in b.edits], abs=1e-4)
