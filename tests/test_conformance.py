"""The conformance kit (`xcorr_core.testing`): the core's components pass it, and a component that
breaks one rule fails that check with a message naming the rule and the fix."""

from __future__ import annotations

import random

import pytest
import torch

from xcorr_core import Case, Matches, MetricResult, Ranking, ReRanker, StrictConfig
from xcorr_core.builtins import NeighbourExplainer, Top1Accuracy
from xcorr_core.matching import MutualNNMatcher
from xcorr_core.testing import (ConformanceError, check_explainer, check_matcher, check_metric, check_reranker, check_statistic,
                                random_maps)
from xcorr_core.validation import check_tensor


class MeanCosine(ReRanker):
    """A correct toy re-ranker: cosine of mean vectors; pairs = the same cell, cells 0 and 1."""

    name = "test_mean_cosine"
    summary = "toy"

    def rerank(self, query: torch.Tensor, candidates: torch.Tensor) -> Ranking:
        check_tensor("query", query, ndim=3, floating=True, finite=True)
        check_tensor("candidates", candidates, ndim=4, floating=True, finite=True)
        s = torch.nn.functional.cosine_similarity(query.mean((1, 2))[None], candidates.mean((2, 3)), dim=1)
        n = candidates.shape[0]
        pairs = torch.tensor([[0, 0], [1, 1]]).expand(n, 2, 2).clone()
        return Ranking(order=s.argsort(descending=True), scores=s, pairs=pairs, weights=torch.ones(n, 2))

    def rerank_many(self, queries: torch.Tensor, candidates: torch.Tensor) -> list[Ranking]:
        return [self.rerank(q, c) for q, c in zip(queries, candidates)]


def _with(method: str, fn):  # a subclass of MeanCosine whose rerank is post-processed by fn
    def rerank(self, query, candidates):
        return fn(MeanCosine.rerank(self, query, candidates))
    return type(f"Broken_{method}", (MeanCosine,), {"rerank": rerank, "name": f"broken_{method}"})


def test_correct_components_pass() -> None:
    check_reranker(MeanCosine)
    check_matcher(MutualNNMatcher)
    check_metric(Top1Accuracy)


@pytest.mark.parametrize(("broken", "message"), [
    (_with("order", lambda r: r.model_copy(update={"order": torch.zeros_like(r.order)})), "is not a permutation"),
    (_with("unsorted", lambda r: r.model_copy(update={"order": r.order.flip(0)})), "does not sort the scores"),
    (_with("pairs", lambda r: r.model_copy(update={"pairs": r.pairs + 1000})), "outside the grids"),
    (_with("nan", lambda r: r.model_copy(update={"scores": r.scores * float("nan")})), "does not sort|non-finite"),
    (_with("random", lambda r: r.model_copy(update={"weights": r.weights * random.random()})), "differ"),
    (_with("type", lambda r: (r.order, r.scores)), "not a Ranking"),
])
def test_broken_reranker_fails_with_the_rule(broken: type, message: str) -> None:
    with pytest.raises(ConformanceError, match=message):
        check_reranker(broken)


def test_reranker_bare_exception_and_disagreeing_batch_fail() -> None:
    class Untyped(MeanCosine):
        name = "untyped"

        def rerank(self, query, candidates):
            if query.ndim != 3:
                raise ValueError("bad")
            return MeanCosine.rerank(self, query, candidates)

    with pytest.raises(ConformanceError, match=r"raised ValueError.*Fix: validate inputs"):
        check_reranker(Untyped)

    class Disagrees(MeanCosine):
        name = "disagrees"

        def rerank_many(self, queries, candidates):
            return [self.rerank(q, c.flip(0)) for q, c in zip(queries, candidates)]

    with pytest.raises(ConformanceError, match="rerank_many.*disagrees with rerank"):
        check_reranker(Disagrees)


def test_class_rules() -> None:
    class Loose(MeanCosine):
        name = "loose"

        class Config(StrictConfig):
            model_config = {"extra": "allow"}

    with pytest.raises(ConformanceError, match="accepts an unknown field"):
        check_reranker(Loose)
    with pytest.raises(ConformanceError, match="not a subclass of xcorr_core.ReRanker"):
        check_reranker(MutualNNMatcher)

    class Nameless(MeanCosine):
        name = ""

    with pytest.raises(ConformanceError, match="'name' is missing"):
        check_reranker(Nameless)


def test_broken_matcher_fails() -> None:
    class OffGrid(MutualNNMatcher):
        name = "off_grid"

        def match(self, a, b):
            m = super().match(a, b)
            return Matches(pairs=m.pairs + 10_000, scores=m.scores)

    with pytest.raises(ConformanceError, match="outside the grids"):
        check_matcher(OffGrid)


def _cases() -> list[Case]:
    g = torch.Generator().manual_seed(0)
    return [Case(query_id=i, image=torch.rand(3, 16, 16, generator=g), prediction=1, confidence=0.6, target=1,
                 neighbour_ids=torch.arange(5) + 10 * i, neighbour_labels=torch.tensor([1, 1, 0, 1, 2]),
                 neighbour_scores=torch.linspace(0.9, 0.5, 5)) for i in range(2)]


def test_explainer_checks() -> None:
    check_explainer(NeighbourExplainer, cases=_cases())

    class Lax(NeighbourExplainer):  # reads a missing field with a bare TypeError
        name = "lax"

        def explain(self, case):
            return NeighbourExplainer.explain(self, case) if case.prediction is not None else int(None)

    with pytest.raises(ConformanceError, match="without 'prediction'.*TypeError"):
        check_explainer(Lax, cases=_cases())

    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU())

    class Leaky(NeighbourExplainer):  # hooks the model and raises on a NaN image without removing it
        name = "leaky"
        requires = NeighbourExplainer.requires | {"image"}

        def explain(self, case):
            model[0].register_forward_hook(lambda *a: None)
            check_tensor("image", case.image, finite=True)
            for h in list(model[0]._forward_hooks):
                del model[0]._forward_hooks[h]
            return NeighbourExplainer.explain(self, case)

    with pytest.raises(ConformanceError, match="a hook stayed on the model"):
        check_explainer(Leaky, cases=_cases(), model=model)


def test_metric_checks() -> None:
    class NaNMetric(Top1Accuracy):
        name = "nan_metric"

        def compute(self, **data):
            r = super().compute(**data)
            return MetricResult(name=self.name, value=float("nan"), n=r.n)

    with pytest.raises(ConformanceError, match="value nan"):
        check_metric(NaNMetric)

    class NoLengthCheck(Top1Accuracy):
        name = "no_length_check"

        def compute(self, predictions, targets, **_):
            k = min(len(predictions), len(targets))
            return MetricResult(name=self.name, value=float((predictions[:k] == targets[:k]).float().mean()), n=k)

    with pytest.raises(ConformanceError, match="one sample shorter"):
        check_metric(NoLengthCheck)
    with pytest.raises(ConformanceError, match="requires .*'maps'.* pass data="):
        class NeedsMaps(Top1Accuracy):
            name = "needs_maps"
            requires = frozenset({"maps"})
        check_metric(NeedsMaps)



def test_statistic_checks() -> None:
    import xcorr_core as xc

    class Spread(xc.Statistic):
        name = "test_spread"
        summary = "max - min of a study's values"
        requires = frozenset({"values"})

        def compute(self, **data):
            v = torch.as_tensor(data["values"], dtype=torch.float64)
            return MetricResult(name=self.name, value=float(v.max() - v.min()), n=v.numel())

    check_statistic(Spread, data={"values": torch.tensor([1.0, 4.0, 2.0])})
    with pytest.raises(ConformanceError, match="not a subclass of xcorr_core.Statistic"):
        check_statistic(Top1Accuracy, data={})
    with pytest.raises(ConformanceError, match="not a subclass of xcorr_core.Metric"):
        check_metric(Spread)
    with pytest.raises(ConformanceError, match="requires .*'values'.* pass data="):
        check_statistic(Spread, data={})


def test_random_maps_shapes() -> None:
    q, c = random_maps(8, (3, 4), 5)
    assert q.shape == (8, 3, 4) and c.shape == (5, 8, 3, 4) and (q >= 0).all()


def test_fixtures_of_the_pytest_plugin(xcorr_cases, xcorr_maps, xcorr_birds) -> None:
    """The entry point's fixtures: kNN cases a pipeline would build, checked through the kit."""
    assert len(xcorr_cases) == len(xcorr_birds) == 12
    assert all(c.neighbour_ids.shape == (5,) and c.image.shape == (3, 112, 112) for c in xcorr_cases)
    assert sum(c.prediction == c.target for c in xcorr_cases) >= 9  # the shipped model is ~98 % on clean SynthBirds
    check_explainer(NeighbourExplainer, cases=xcorr_cases[:3])
    check_reranker(MeanCosine, maps=xcorr_maps)


def test_the_demo_context_fixture_runs_a_section(xcorr_demo_context) -> None:
    """``xcorr_demo_context`` is what ``xcorr demo`` hands a section: a built-in section runs on it."""
    from xcorr_core.demo import DemoSection, _reid_section

    ctx = xcorr_demo_context
    sec = _reid_section(ctx)
    assert isinstance(sec, DemoSection) and 0 <= sec.report["recall_at_1"] <= sec.report["recall_at_5"] <= 1
    assert ctx.birds_maps(ctx.birds_test["test"]).shape == (len(ctx.birds_test["test"]), 256, 7, 7)
    assert (ctx.out / "figures").is_dir() and set(ctx.birds_test) == {"test", "sticker", "style"}
