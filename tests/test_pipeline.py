"""Pipeline: validation up front with located errors; results equal the parts run by hand."""
from __future__ import annotations

import types
from pathlib import Path

import pytest
import torch

import xcorr_core as xc
from xcorr_core.demo import demo_spec_path


class ReverseReRanker(xc.ReRanker):
    """Reverses the shortlist: makes the re-ranked decision differ from kNN in a known way."""

    name = "test_reverse"
    summary = "reverse order"

    def rerank(self, query: torch.Tensor, candidates: torch.Tensor) -> xc.Ranking:
        n = candidates.shape[0]
        scores = torch.arange(n, dtype=torch.float32)
        return xc.Ranking(order=torch.argsort(scores, descending=True), scores=scores,
                          pairs=torch.stack([torch.arange(5).expand(n, 5)] * 2, 2).contiguous(), weights=torch.ones(n, 5))


def _register() -> None:
    mod = types.ModuleType("p")
    mod.register_rerankers = xc.hookimpl(lambda register: register(ReverseReRanker))
    assert xc.register_plugin(mod, name="p").error is None


@pytest.mark.parametrize("spec, where", [
    ({"rerankers": [{"name": "nope"}]}, "rerankers[0].name"),
    ({"explainers": [{"name": "nearest_neighbours", "config": {"top": 0}}]}, "explainers[0].config"),
    ({"metrics": [{"name": "top1_accuracy", "config": {"x": 1}}]}, "metrics[0].config"),
    ({"decision": {"k": 0}}, "decision.k"),
    ({"features": {"pooled_layer": "layer9"}}, "features.pooled_layer"),
    ({"shortlist": 10, "rerankers": [{"name": "test_reverse"}]}, "decision.k"),
    ({"features": {"spatial_layer": None}, "rerankers": [{"name": "test_reverse"}]}, "features.spatial_layer"),
    ({"surprise": 1}, "surprise"),
])
def test_build_errors_say_where(spec, where, tiny_model) -> None:
    _register()
    with pytest.raises(xc.ConfigError) as e:
        xc.Pipeline(spec, model=tiny_model)
    assert str(e.value).split(":")[0].endswith(where) or where in str(e.value)


def test_explainer_needing_a_ranking_without_rerankers(tiny_model) -> None:
    class NeedsRanking(xc.Explainer):
        name, summary = "needs_ranking", "x"
        requires = frozenset({"ranking"})

        def explain(self, case):
            ...

    mod = types.ModuleType("q")
    mod.register_explainers = xc.hookimpl(lambda register: register(NeedsRanking))
    xc.register_plugin(mod, name="q")
    with pytest.raises(xc.ConfigError, match=r"explainers\[0\].*ranking"):
        xc.Pipeline({"explainers": [{"name": "needs_ranking"}]}, model=tiny_model)


def test_spec_files(tmp_path: Path) -> None:
    assert xc.PipelineSpec.from_file(demo_spec_path()).decision.k == 20
    root = Path(__file__).resolve().parents[1]
    assert (root / "examples" / "demo_pipeline.yaml").read_text() == demo_spec_path().read_text()
    (tmp_path / "s.yaml").write_text("decision:\n  k: -3\n")
    with pytest.raises(xc.ConfigError, match=r"s\.yaml: decision\.k"):
        xc.PipelineSpec.from_file(tmp_path / "s.yaml")
    (tmp_path / "s.json").write_text("{bad")
    with pytest.raises(xc.ConfigError, match="not valid JSON"):
        xc.PipelineSpec.from_file(tmp_path / "s.json")


def test_run_equals_parts_by_hand(tiny_model, tiny_birds) -> None:
    _register()
    train, test = tiny_birds
    pipe = xc.Pipeline({"shortlist": 30, "decision": {"k": 10}, "rerankers": [{"name": "test_reverse"}],
                        "explain": {"correct": 2, "wrong": 2}}, model=tiny_model)
    assert pipe.methods == ["knn", "test_reverse"]
    with pytest.raises(xc.InputError, match="fit"):
        pipe.run(test)
    pipe.fit(train, progress=False)
    res = pipe.run(test, name="test", progress=False)
    # by hand: features, index, vote
    fx = xc.FeatureExtractor(tiny_model, ["layer4"])
    gq = fx.extract(train, progress=False, keep_maps=False).pooled["layer4"]
    qq = fx.extract(test, progress=False, keep_maps=False).pooled["layer4"]
    idx = xc.GalleryIndex(gq.shape[1])
    idx.add(gq, train.labels)
    knn = xc.KNNClassifier(idx, k=10, num_classes=24).predict(qq)
    assert torch.equal(res.methods["knn"].predictions, knn.predictions)
    torch.testing.assert_close(res.methods["knn"].confidences, knn.confidences)
    # reversing the 30-shortlist means the bottom 10 of the top 30 vote
    far = idx.search(qq, 30).labels.flip(1)[:, :10]
    assert torch.equal(res.methods["test_reverse"].predictions, xc.majority_vote(far, 24)[0])
    m = res.methods["knn"].metrics["top1_accuracy"]
    assert m.value == pytest.approx(float((knn.predictions == test.labels).float().mean()))
    exps = res.methods["test_reverse"].explanations
    assert exps and all(e.patch_pairs is not None and e.grid == (7, 7) for e in exps)
    back = xc.RunResult.from_json(res.to_json())
    assert torch.equal(back.methods["knn"].predictions, res.methods["knn"].predictions)


def test_gallery_errors(tiny_model, tiny_birds) -> None:
    train, _ = tiny_birds
    pipe = xc.Pipeline({"decision": {"k": 20}}, model=tiny_model)
    with pytest.raises(xc.InputError, match="empty"):
        pipe.fit(torch.utils.data.Subset(train, []))
    with pytest.raises(xc.InputError, match="needs 20 neighbours"):
        pipe.fit(torch.utils.data.Subset(train, list(range(10))))


def test_batched_rerank_many_gives_the_same_result(tiny_model, tiny_birds) -> None:
    class Batched(ReverseReRanker):
        name = "test_reverse_many"
        calls = 0

        def rerank_many(self, queries, candidates):
            Batched.calls += 1
            return [self.rerank(q, c) for q, c in zip(queries, candidates)]

    mod = types.ModuleType("b")
    mod.register_rerankers = xc.hookimpl(lambda register: (register(ReverseReRanker), register(Batched)))
    xc.register_plugin(mod, name="b")
    train, test = tiny_birds
    pipe = xc.Pipeline({"shortlist": 30, "decision": {"k": 10}, "features": {"batch_size": 16},
                        "rerankers": [{"name": "test_reverse"}, {"name": "test_reverse_many"}]}, model=tiny_model)
    res = pipe.fit(train, progress=False).run(test, progress=False)
    a, b = res.methods["test_reverse"], res.methods["test_reverse_many"]
    assert torch.equal(a.predictions, b.predictions) and torch.equal(a.neighbour_ids, b.neighbour_ids)
    assert Batched.calls == (len(test) + 15) // 16


def test_cases_and_explain_match_run(tiny_model, tiny_birds) -> None:
    _register()
    train, test = tiny_birds
    pipe = xc.Pipeline({"shortlist": 30, "decision": {"k": 10}, "rerankers": [{"name": "test_reverse"}]}, model=tiny_model)
    res = pipe.fit(train, progress=False).run(test, progress=False)
    idx = [3, 0, 17]
    for method in ("knn", "test_reverse"):
        cases = pipe.cases(test, idx, method=method)
        assert [c.query_id for c in cases] == idx
        assert [c.prediction for c in cases] == res.methods[method].predictions[idx].tolist()
        assert all(torch.equal(c.neighbour_ids, res.methods[method].neighbour_ids[i]) for c, i in zip(cases, idx))
    assert cases[0].ranking is not None and cases[0].grid == (7, 7)
    exps = pipe.explain(test, idx, "nearest_neighbours", method="test_reverse")
    assert [e.query_id for e in exps] == idx and all(e.patch_pairs is not None for e in exps)
    with pytest.raises(xc.InputError, match="unknown method"):
        pipe.cases(test, idx, method="emd")


def test_all_rerankers_skips_those_that_opt_out(tiny_model) -> None:
    _register()

    class Expensive(ReverseReRanker):
        name = "test_expensive"
        auto = False

    mod = types.ModuleType("opt_out")
    mod.register_rerankers = xc.hookimpl(lambda register: register(Expensive))
    xc.register_plugin(mod, name="opt_out")
    auto = xc.Pipeline({"all_rerankers": True}, model=tiny_model).methods
    assert "test_reverse" in auto and "test_expensive" not in auto
    named = xc.Pipeline({"rerankers": [{"name": "test_expensive"}]}, model=tiny_model).methods
    assert named == ["knn", "test_expensive"]


def test_plugins_name_models_for_specs(tiny_model) -> None:
    mod = types.ModuleType("model_plugin")
    mod.register_models = xc.hookimpl(lambda register: register("tiny_test_model", lambda: tiny_model, "a tiny model"))
    xc.register_plugin(mod, name="model_plugin")
    from xcorr_core.registry import models

    assert models()["tiny_test_model"][0] == "model_plugin"
    pipe = xc.Pipeline({"features": {"model": "tiny_test_model"}})
    assert pipe.model is tiny_model
    with pytest.raises(xc.ConfigError, match="tiny_test_model"):
        xc.Pipeline({"features": {"model": "no_such_model"}})


class BestCellReRanker(xc.ReRanker):
    """Score = the best cosine between any query cell and any candidate cell; reads maps or cells."""

    name = "test_best_cell"
    summary = "max cell cosine"
    cells_calls = 0

    def rerank(self, query: torch.Tensor, candidates: torch.Tensor) -> xc.Ranking:
        return self._ranking(xc.CellMaps.from_maps(query).unit, xc.CellMaps.from_maps(candidates).unit)

    def rerank_cells_many(self, queries: torch.Tensor, cells: xc.CellMaps) -> list[xc.Ranking]:
        BestCellReRanker.cells_calls += 1
        assert cells.unit.ndim == 4 and cells.unit.shape[:2] == (queries.shape[0], cells.norms.shape[1])
        return [self._ranking(xc.CellMaps.from_maps(q).unit, cells.unit[i]) for i, q in enumerate(queries)]

    @staticmethod
    def _ranking(q: torch.Tensor, c: torch.Tensor) -> xc.Ranking:
        sim = c @ q.T  # [N, HWc, HWq]
        scores = sim.flatten(1).amax(1)
        best = sim.flatten(1).argmax(1)
        pairs = torch.stack([best % q.shape[0], best // q.shape[0]], 1)[:, None]
        return xc.Ranking(order=torch.argsort(scores, descending=True, stable=True), scores=scores, pairs=pairs,
                          weights=scores[:, None])


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_cells_layout_gives_the_maps_layout_result(tiny_model, tiny_birds, dtype: str) -> None:
    mod = types.ModuleType("cells_rr")
    mod.register_rerankers = xc.hookimpl(lambda register: register(BestCellReRanker))
    xc.register_plugin(mod, name="cells_rr")
    train, test = tiny_birds
    spec = {"shortlist": 20, "decision": {"k": 5}, "features": {"batch_size": 16}, "rerankers": [{"name": "test_best_cell"}]}
    auto = xc.Pipeline({**spec, "maps": {"dtype": dtype}}, model=tiny_model).fit(train, progress=False)
    assert auto.store is not None and auto.store.layout == "cells"  # every re-ranker reads cells
    BestCellReRanker.cells_calls = 0
    a = auto.run(test, progress=False).methods["test_best_cell"]
    assert BestCellReRanker.cells_calls == (len(test) + 15) // 16
    maps = xc.Pipeline({**spec, "maps": {"layout": "maps", "dtype": "float32"}}, model=tiny_model).fit(train, progress=False)
    assert maps.store is not None and maps.store.layout == "maps"
    b = maps.run(test, progress=False).methods["test_best_cell"]
    assert BestCellReRanker.cells_calls == (len(test) + 15) // 16  # the maps layout used rerank()
    tol = 1e-6 if dtype == "float32" else 2e-3
    pos = torch.arange(0, len(train), 7)
    assert torch.allclose(auto.store.get_cells(pos).unit, maps.store.get_cells(pos).unit, atol=tol)
    if dtype == "float32":
        assert torch.equal(a.predictions, b.predictions) and torch.equal(a.neighbour_ids, b.neighbour_ids)
    else:
        assert (a.predictions == b.predictions).float().mean() >= 0.9
