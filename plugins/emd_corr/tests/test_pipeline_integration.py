"""EMD-Corr as a re-ranker stage of the core pipeline, found through its entry point."""
from __future__ import annotations

import pytest

import xcorr_core as xc
from xcorr_core.data import SynthBirds
from xcorr_core.models import load_pretrained


def test_registered_through_entry_point() -> None:
    xc.reload_plugins()
    found = {(c.kind, c.name): c.plugin for c in xc.components()}
    assert found[("reranker", "emd_corr")] == "emd_corr" and found[("explainer", "emd_corr")] == "emd_corr"
    assert found[("metric", "explanation_diversity")] == "emd_corr"


@pytest.fixture(scope="module")
def run():
    xc.reload_plugins()
    spec = {"rerankers": [{"name": "emd_corr"}],
            "explainers": [{"name": "nearest_neighbours"}, {"name": "emd_corr"}, {"name": "emd_corr", "config": {"boxes": False}}],
            "metrics": [{"name": "top1_accuracy"}, {"name": "explanation_diversity"}]}
    pipe = xc.Pipeline(spec, model=load_pretrained("birds"))
    pipe.fit(SynthBirds("train", per_class=6, progress=False), progress=False)
    test = SynthBirds("test", per_class=2, progress=False)
    return pipe, test, pipe.run(test, name="test", progress=False)


def test_pipeline_decisions_follow_the_reranker(run) -> None:
    pipe, test, res = run
    assert pipe.methods == ["knn", "emd_corr"]
    # by hand: shortlist of 50 from the index, maps from the store, re-rank, vote over 20
    fx = xc.FeatureExtractor(pipe.model, ["layer4"])
    f = fx(test.images[:4].float() / 255)
    rr = xc.create("reranker", "emd_corr")
    for i in range(4):
        sl = pipe.index.search(f.pooled["layer4"][i:i + 1], 50)
        ranking = rr.rerank(f.maps["layer4"][i], pipe.store.get(sl.positions[0]))
        labels = sl.labels[0][ranking.order[:20]]
        pred, votes = xc.majority_vote(labels[None], 24)
        assert int(res.methods["emd_corr"].predictions[i]) == int(pred)
        assert float(res.methods["emd_corr"].confidences[i]) == pytest.approx(int(votes) / 20)


def test_explanations(run) -> None:
    _, _, res = run
    exps = res.methods["emd_corr"].explanations
    emd = [e for e in exps if e.method == "emd_corr"]
    nn = [e for e in exps if e.method == "emd_nn"]
    assert emd and nn and len(emd) == len(nn)
    for e in emd:
        assert e.patch_pairs.shape[1:] == (5, 2) and e.grid == (7, 7) and e.meta["boxes"] is True
        assert e.support_ids.numel() <= 5
    assert all(e.meta["boxes"] is False for e in nn)
    assert not any(e.method.startswith("emd") for e in res.methods["knn"].explanations)  # only its own decisions
    core = [e for e in exps if e.method == "nearest_neighbours"]
    assert core and all(e.meta["decided_by"] == "emd_corr" and e.patch_pairs is not None for e in core)
    back = xc.RunResult.from_json(res.to_json())
    assert back.methods["emd_corr"].metrics["explanation_diversity"].value == res.methods["emd_corr"].metrics["explanation_diversity"].value
