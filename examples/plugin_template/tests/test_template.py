"""The template's own tests: values against brute force, registration through entry points."""
from __future__ import annotations

import pytest
import torch

import xcorr_core as xc


def test_found_through_entry_points() -> None:
    xc.reload_plugins()
    names = {c.name for c in xc.components() if c.plugin == "template"}
    assert names == {"template_argmax", "template_patch_cosine", "template_votes", "template_error_rate"}


def test_matcher_against_double_loop() -> None:
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(8, 3, 4, generator=g), torch.randn(8, 2, 5, generator=g)
    m = xc.create("matcher", "template_argmax").match(a, b)
    av, bv = a.flatten(1).T, b.flatten(1).T
    for i in range(av.shape[0]):
        sims = [float(torch.nn.functional.cosine_similarity(av[i], bv[j], dim=0)) for j in range(bv.shape[0])]
        assert int(m.pairs[i, 1]) == max(range(len(sims)), key=sims.__getitem__)
        assert m.scores[i] == pytest.approx(max(sims), abs=1e-5)


def test_reranker_prefers_the_query_itself() -> None:
    g = torch.Generator().manual_seed(1)
    q = torch.randn(16, 3, 3, generator=g)
    cands = torch.cat([torch.randn(4, 16, 3, 3, generator=g), q[None]])
    r = xc.create("reranker", "template_patch_cosine", pairs=3).rerank(q, cands)
    assert int(r.order[0]) == 4 and r.pairs.shape == (5, 3, 2)
    assert torch.equal(r.pairs[4, :, 0], r.pairs[4, :, 1])  # identical maps match cell to cell


def test_bad_input_is_an_error() -> None:
    with pytest.raises(xc.InputError):
        xc.create("reranker", "template_patch_cosine").rerank(torch.randn(4, 2, 2), torch.randn(3, 5, 2, 2))


def test_explainer_and_metric() -> None:
    case = xc.Case(neighbour_labels=torch.tensor([2, 2, 0]), prediction=2)
    assert xc.create("explainer", "template_votes").explain(case).votes.tolist() == [1, 0, 2]
    r = xc.create("metric", "template_error_rate").compute(predictions=torch.tensor([1, 2]), targets=torch.tensor([1, 0]))
    assert r.value == 0.5


def test_components_conform(xcorr_cases) -> None:
    """The core's conformance kit (fixtures from its pytest plugin): the contract a pipeline relies on."""
    from xcorr_core.testing import check_explainer, check_matcher, check_metric, check_reranker
    from xcorr_template.components import ArgmaxMatcher, ErrorRate, PatchCosineReRanker, VoteExplainer

    check_reranker(PatchCosineReRanker)
    check_matcher(ArgmaxMatcher)
    check_explainer(VoteExplainer, cases=xcorr_cases[:3])
    check_metric(ErrorRate)
