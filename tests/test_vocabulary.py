"""Metrics in a pipeline spec read from the documented vocabulary: decisions, the explained
queries' images and annotations, and a named explainer's outputs (xcorr_core.vocabulary)."""

from __future__ import annotations

from typing import Any, ClassVar

import pytest
import torch

import xcorr_core as xc
from xcorr_core import Explanation, MetricResult, Tensor
from xcorr_core.data import SynthBirds, SynthHerd
from xcorr_core.errors import ConfigError, InputError


class BoxMap(Explanation):
    maps: Tensor


class BoxExplainer(xc.Explainer):
    """A map that is 1 inside the query's true box: CH = 100 % by construction."""

    name = "test_box_map"
    summary = "toy"
    requires: ClassVar[frozenset[str]] = frozenset({"image", "query_id"})
    boxes: torch.Tensor

    def explain(self, case: xc.Case) -> BoxMap:
        x0, y0, x1, y1 = self.boxes[case.query_id].round().int().tolist()
        m = torch.zeros(1, *case.image.shape[-2:])
        m[:, y0:y1, x0:x1] = 1
        return BoxMap(method=self.name, query_id=case.query_id, maps=m)


class MassInBox(xc.Metric):
    name = "test_mass_in_box"
    summary = "toy content heatmap"
    requires: ClassVar[frozenset[str]] = frozenset({"maps", "boxes", "images", "query_ids", "model"})

    def compute(self, **data: Any) -> MetricResult:
        maps, boxes = data["maps"], data["boxes"]
        assert data["images"].shape[0] == maps.shape[0] == boxes.shape[0] == data["query_ids"].shape[0]
        assert isinstance(data["model"], torch.nn.Module)
        inside = []
        for m, (x0, y0, x1, y1) in zip(maps, boxes.round().int().tolist()):
            inside.append(float(m[y0:y1, x0:x1].sum() / m.sum()))
        return MetricResult(name=self.name, value=sum(inside) / len(inside), per_sample=torch.tensor(inside), n=len(inside))


class StudyMean(xc.Statistic):
    """A study-level toy: the mean of a study's scores."""

    name = "test_study_mean"
    summary = "toy statistic"
    requires: ClassVar[frozenset[str]] = frozenset({"scores"})

    def compute(self, **data: Any) -> MetricResult:
        s = torch.as_tensor(data["scores"], dtype=torch.float64)
        return MetricResult(name=self.name, value=float(s.mean()), n=int(s.numel()))


class NeedsFlips(MassInBox):
    name = "test_needs_flips"
    requires: ClassVar[frozenset[str]] = frozenset({"maps", "flips"})


@pytest.fixture
def toys():
    info = xc.register_plugin(_toy_plugin(), name="test_vocabulary")
    assert info.error is None, info.error
    return info


def _toy_plugin():
    import types

    mod = types.ModuleType("test_vocabulary_plugin")

    @xc.hookimpl
    def register_explainers(register):
        register(BoxExplainer)

    @xc.hookimpl
    def register_metrics(register):
        register(MassInBox)
        register(NeedsFlips)

    @xc.hookimpl
    def register_statistics(register):
        register(StudyMean)

    mod.register_explainers, mod.register_metrics, mod.register_statistics = register_explainers, register_metrics, register_statistics
    return mod


def _spec(**metric_config: Any) -> dict[str, Any]:
    return {"features": {"model": "birds"}, "explain": {"correct": 3, "wrong": 1},
            "explainers": [{"name": "test_box_map"}, {"name": "nearest_neighbours"}],
            "metrics": [{"name": "test_mass_in_box", "config": metric_config}, {"name": "top1_accuracy"}]}


def test_a_metric_reads_a_named_explainers_maps_and_the_data_sets_boxes(toys) -> None:
    queries = SynthBirds("test", per_class=1, num_classes=6)
    BoxExplainer.boxes = queries.boxes
    pipe = xc.Pipeline(_spec(explainer="test_box_map")).fit(SynthBirds("train", per_class=4, num_classes=6))
    res = pipe.run(queries)
    r = res.methods["knn"].metrics["test_mass_in_box"]
    exps = res.methods["knn"].explanations
    mine = [e for e in exps if e.method == "test_box_map"]
    assert len(mine) >= 2 and len(exps) == 2 * len(mine)  # both explainers ran; the metric read only one's
    assert r.n == len(mine) and r.value == pytest.approx(1.0)  # the maps are the boxes: all mass inside
    assert res.summary()["knn"]["test_mass_in_box"] == pytest.approx(1.0)


def test_spec_errors_name_what_is_missing(toys) -> None:
    with pytest.raises(ConfigError, match=r"metrics\[0\] \(test_mass_in_box\) reads \['maps'\] of an explainer: name it"):
        xc.Pipeline(_spec())
    with pytest.raises(ConfigError, match=r"metrics\[0\]\.config\.explainer: 'gradcam' is not an explainer of this spec"):
        xc.Pipeline(_spec(explainer="gradcam"))
    spec = _spec(explainer="test_box_map")
    spec["metrics"][0]["name"] = "test_needs_flips"
    with pytest.raises(ConfigError, match=r"needs \['flips'\], which a pipeline cannot supply"):
        xc.Pipeline(spec)


def test_a_data_set_without_the_annotation_is_an_input_error(toys) -> None:
    herd = SynthHerd("test", individuals=6, photos=2)
    BoxExplainer.boxes = torch.tensor([[10.0, 10.0, 60.0, 60.0]]).expand(len(herd), 4)
    pipe = xc.Pipeline(_spec(explainer="test_box_map")).fit(SynthHerd("train", individuals=6, photos=4))
    with pytest.raises(InputError, match=r"reads boxes, but the data set .*SynthHerd.* has no boxes annotation"):
        pipe.run(herd)


def test_a_statistic_is_its_own_kind_and_a_spec_refuses_it(toys) -> None:
    assert [c.name for c in xc.components("statistic")] == ["test_study_mean"]
    assert "test_study_mean" not in {c.name for c in xc.components("metric")}
    assert xc.create("statistic", "test_study_mean").compute(scores=[1.0, 2.0, 6.0]).value == pytest.approx(3.0)
    spec = _spec(explainer="test_box_map")
    spec["metrics"][0] = {"name": "test_study_mean"}
    with pytest.raises(ConfigError, match=r"metrics\[0\]\.name: 'test_study_mean' is a study-level statistic .* not a per-query metric"):
        xc.Pipeline(spec)
    with pytest.raises(LookupError):
        xc.create("metric", "test_study_mean")


def test_every_installed_metric_reads_the_vocabulary(all_plugins) -> None:
    """Each per-query metric of every installed plugin can be named in a spec; the one exception is
    cgc's explanation_consistency (fixed training views; its spec form is view_consistency)."""
    from xcorr_core.vocabulary import VOCABULARY

    outside = {c.name for c in xc.components("metric") if not set(xc.get_class("metric", c.name).requires) <= set(VOCABULARY)}
    assert outside <= {"explanation_consistency"}, outside
    names = {c.name for c in xc.components("metric")}
    assert "explanation_consistency" not in names or "view_consistency" in names
