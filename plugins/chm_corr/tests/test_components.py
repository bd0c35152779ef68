"""Components: the ReRanker / Matcher contracts, batching, options, errors, and explanations
that draw exactly the scored pairs."""
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import xcorr_core as xc
from xcorr_chm_corr import chm_corr_rerank, load_pretrained
from xcorr_chm_corr.scoring import keypoint_mask


@pytest.fixture(scope="module")
def chm():
    return load_pretrained()


def maps(n: int, side: int, seed: int) -> torch.Tensor:
    return torch.rand(n, 256, side, side, generator=torch.Generator().manual_seed(seed)) ** 3


@given(st.integers(1, 6), st.integers(2, 4), st.integers(0, 1000))
def test_reranker_contract(n, side, seed):
    rr = xc.create("reranker", "chm_corr")
    q, c = maps(1, side, seed)[0], maps(n, side, seed + 1)
    r = rr.rerank(q, c)
    assert isinstance(r, xc.Ranking)
    assert sorted(r.order.tolist()) == list(range(n))
    assert r.scores.shape == (n,) and bool((r.scores[r.order[:-1]] >= r.scores[r.order[1:]]).all())
    L = min(5, side * side)
    assert r.pairs.shape == (n, L, 2) and r.pairs.dtype == torch.long and r.weights.shape == (n, L)
    assert bool(((r.pairs >= 0) & (r.pairs < side * side)).all())
    # the score is the mean of the weights of the scored pairs
    assert torch.allclose(r.scores, r.weights.mean(1), atol=1e-6)


def test_batched_equals_one_at_a_time_and_chunking_changes_nothing(chm):
    q, c = maps(3, 7, 0), maps(3 * 6, 7, 1).view(3, 6, 256, 7, 7)
    many = chm_corr_rerank(chm, q, c, chunk=4)
    for i in range(3):
        one = chm_corr_rerank(chm, q[i], c[i], chunk=50)
        assert torch.allclose(many.scores[i], one.scores[0], atol=1e-5)
        assert torch.equal(many.cells[i], one.cells[0])
    rr = xc.create("reranker", "chm_corr")
    assert [r.order.tolist() for r in rr.rerank_many(q, c)] == [rr.rerank(q[i], c[i]).order.tolist() for i in range(3)]


def test_transpose_option_changes_the_pairing(chm):
    q, c = maps(1, 7, 5)[0], maps(4, 7, 6)
    a = chm_corr_rerank(chm, q, c)
    b = chm_corr_rerank(chm, q, c, authors_transpose=True)
    k = torch.arange(49)
    swap = (k % 7) * 7 + k // 7
    # the authors' pairing of cell (r, c) is the correct target of cell (c, r), transposed
    tr = a.cells[..., swap]
    assert torch.equal(b.cells, (tr % 7) * 7 + tr // 7)


def test_chm_corr_plus_needs_and_uses_the_keypoint_mask(chm):
    rr = xc.create("reranker", "chm_corr_plus")
    q, c = maps(1, 7, 2)[0], maps(5, 7, 3)
    with pytest.raises(xc.InputError, match="keypoint_mask"):
        rr.rerank(q, c)
    kps = torch.tensor([[20.0, 20.0, 1], [90.0, 70.0, 1]])
    mask = keypoint_mask(kps, (112, 112), (7, 7))
    r = rr.rerank(q, c, keypoint_mask=mask)
    out = chm_corr_rerank(chm, q, c, keypoint_mask=mask)
    assert torch.allclose(r.scores, out.scores[0])
    assert torch.allclose(out.scores[0], (out.weights[0].sum(1)) / 49, atol=1e-6)  # 2 masked cells <= 5 pairs: all in the top
    assert getattr(type(rr), "auto") is False


def test_bad_inputs(chm):
    rr = xc.create("reranker", "chm_corr")
    with pytest.raises(xc.InputError, match="256-channel"):
        rr.rerank(torch.rand(64, 7, 7), torch.rand(3, 64, 7, 7))
    with pytest.raises(xc.InputError, match="square"):
        rr.rerank(torch.rand(256, 7, 6), torch.rand(3, 256, 7, 6))
    with pytest.raises(xc.InputError, match="NaN"):
        rr.rerank(torch.full((256, 7, 7), float("nan")), torch.rand(3, 256, 7, 7))
    with pytest.raises(xc.InputError):
        rr.rerank(torch.rand(256, 7, 7), torch.rand(3, 256, 5, 5))
    with pytest.raises(xc.ConfigError, match="threshold"):
        xc.create("reranker", "chm_corr", threshold=1.5)
    with pytest.raises(xc.InputError, match="CHMNet"):
        rr.chm = object()  # type: ignore[assignment]


def test_matcher_contract():
    m = xc.create("matcher", "chm")
    a, b = maps(1, 7, 8)[0], maps(1, 7, 9)[0]
    res = m.match(a, b)
    assert isinstance(res, xc.Matches) and res.pairs.shape == (49, 2) and res.scores.shape == (49,)
    assert res.pairs[:, 0].tolist() == list(range(49)) and bool(((res.pairs >= 0) & (res.pairs < 49)).all())
    assert xc.create("matcher", "chm", min_score=float(res.scores.max()) + 1).match(a, b).pairs.shape == (0, 2)


def test_explainer_draws_exactly_the_scored_pairs():
    from xcorr_core.data import SynthBirds

    pipe = xc.Pipeline({"rerankers": [{"name": "chm_corr"}], "decision": {"k": 5}, "shortlist": 10,
                        "explainers": [{"name": "chm_corr"}]})
    train, test = SynthBirds("train", per_class=2), SynthBirds("test", per_class=1)
    pipe.fit(train, progress=False)
    res = pipe.run(test, name="t", progress=False)
    exps = res.methods["chm_corr"].explanations
    assert exps and all(e.method == "chm_corr" for e in exps)
    cases = pipe.cases(test, [e.query_id for e in exps], method="chm_corr")
    for e, case in zip(exps, cases):
        for j, sid in enumerate(e.support_ids.tolist()):
            pos = int((case.shortlist_ids == sid).nonzero()[0])
            assert torch.equal(e.patch_pairs[j], case.ranking.pairs[pos])
            assert torch.equal(e.patch_weights[j], case.ranking.weights[pos])
        assert e.grid == (7, 7)
    nn_exp = xc.create("explainer", "chm_nn").explain(cases[0])
    assert nn_exp.method == "chm_nn" and nn_exp.meta["boxes"] is False
    assert xc.Explanation.model_validate_json(exps[0].to_json()).method == "chm_corr"
    fig = exps[0].plot(images=train.image, query=test.image(exps[0].query_id))
    assert len(fig.axes) >= 2
