"""CGC's per-query metrics from a pipeline spec (issue 28's outside check): Grad-CAM maps of the
pipeline's own model, scored by Content Heatmap against SynthBirds' boxes and by insertion /
deletion AUC, through Pipeline(spec).fit(gallery).run(queries)."""

import pytest
import torch

import xcorr_core as xc
from xcorr_core.data import SynthBirds
from xcorr_cgc.attribution import content_heatmap


def test_gradcam_metrics_from_a_spec() -> None:
    spec = {"features": {"model": "birds"}, "explainers": [{"name": "gradcam"}], "explain": {"correct": 3, "wrong": 1},
            "metrics": [{"name": "content_heatmap", "config": {"explainer": "gradcam"}},
                        {"name": "insertion_auc", "config": {"explainer": "gradcam"}},
                        {"name": "deletion_auc", "config": {"explainer": "gradcam"}}]}
    queries = SynthBirds("test", per_class=1)
    res = xc.Pipeline(spec).fit(SynthBirds("train", per_class=5)).run(queries)
    summary = res.summary()["knn"]
    assert set(summary) == {"content_heatmap", "insertion_auc", "deletion_auc"}
    exps = res.methods["knn"].explanations
    # the same value by hand: the explanations' maps against the explained queries' boxes
    maps = torch.cat([e.maps for e in exps])
    boxes = queries.boxes[[e.query_id for e in exps]]
    assert summary["content_heatmap"] == pytest.approx(float(content_heatmap(maps, boxes).nanmean()), rel=1e-6)
    assert 0 <= summary["deletion_auc"] < summary["insertion_auc"] <= 1  # Grad-CAM of the model itself beats random order


def test_a_metric_of_maps_without_an_explainer_is_refused() -> None:
    spec = {"explainers": [{"name": "gradcam"}], "metrics": [{"name": "content_heatmap"}]}
    with pytest.raises(xc.ConfigError, match=r"metrics\[0\] \(content_heatmap\) reads \['maps'\] of an explainer: name it, e.g. "
                                             r"config: \{explainer: gradcam\}"):
        xc.Pipeline(spec)
    with pytest.raises(xc.ConfigError, match=r"explanation_consistency\) needs \['flips', 'maps_aug', 'maps_orig'\], which a pipeline"):
        xc.Pipeline({"metrics": [{"name": "explanation_consistency"}]})


def test_view_consistency_from_a_spec_equals_the_views_by_hand() -> None:
    from xcorr_cgc.attribution import consistency
    from xcorr_cgc.views import ViewsConfig, make_views

    spec = {"features": {"model": "birds"}, "explainers": [{"name": "gradcam"}], "explain": {"correct": 3, "wrong": 1},
            "metrics": [{"name": "view_consistency", "config": {"explainer": "gradcam", "seed": 3}}]}
    queries = SynthBirds("test", per_class=1)
    pipe = xc.Pipeline(spec).fit(SynthBirds("train", per_class=5))
    res = pipe.run(queries)
    r = res.methods["knn"].metrics["view_consistency"]
    exps = res.methods["knn"].explanations
    # by hand: the same views (seed 3), Grad-CAM of the shipped model on them for each query's prediction
    images = torch.stack([queries[e.query_id][0] for e in exps])
    views = make_views(images, ViewsConfig(size=112, resize_ratio=1.0), torch.Generator().manual_seed(3))
    ex = xc.create("explainer", "gradcam")
    aug = torch.cat([ex.explain(xc.Case(query_id=e.query_id, image=v, prediction=e.prediction, model=pipe.model)).maps
                     for e, v in zip(exps, views.aug)])
    want = consistency(aug, torch.cat([e.maps for e in exps]), views.boxes, views.flips)
    assert r.per_sample.tolist() == pytest.approx(want.tolist(), nan_ok=True)
    assert -1 <= r.value <= 1 and r.n + r.details["left_out"] == len(exps)
