"""PAIR-X in a pipeline spec: the explainer explains each selected query against the gallery image
it was matched to (Case.pair_image), and pairx_coverage / pairx_inverted_residual score those
explanations from the spec (SynthHerd's true homographies), equal to the plugin's own functions."""
import pytest
import torch

import xcorr_core as xc
from xcorr_core.data import SynthHerd
from xcorr_pairx.metrics import inverted_residual_mean, match_coverage


def _views(herd: SynthHerd) -> tuple[torch.utils.data.Subset, torch.utils.data.Subset]:
    first = [i for i in range(len(herd)) if i % herd.photos == 0]
    rest = [i for i in range(len(herd)) if i % herd.photos != 0]
    return torch.utils.data.Subset(herd, first), torch.utils.data.Subset(herd, rest)


SPEC = {"features": {"model": "herd", "pooled_layer": "layer4", "spatial_layer": None}, "decision": {"k": 3},
        "explainers": [{"name": "pairx", "config": {"n": 5}}], "explain": {"correct": 3, "wrong": 1},
        "metrics": [{"name": "pairx_coverage", "config": {"explainer": "pairx"}},
                    {"name": "pairx_inverted_residual", "config": {"explainer": "pairx"}}]}


def test_pairx_metrics_from_a_spec_equal_the_functions() -> None:
    herd = SynthHerd("test", individuals=8, photos=4, progress=False)
    queries, gallery = _views(herd)
    res = xc.Pipeline(SPEC).fit(gallery).run(queries)
    m = res.methods["knn"]
    exps = m.explanations
    assert len(exps) >= 2 and all(e.method == "pairx" for e in exps)
    for e in exps:  # each explained against the best-ranked gallery neighbour of its predicted class
        i = int(e.query_id)
        ids, labels = m.neighbour_ids[i], m.neighbour_labels[i]
        assert e.meta["pair_id"] == int(ids[(labels == e.prediction).nonzero()[0, 0]])
    cov = [match_coverage(e) for e in exps]
    assert m.metrics["pairx_coverage"].value == pytest.approx(sum(cov) / len(cov))
    s1 = []
    for e in exps:
        q, g = queries.indices[int(e.query_id)], gallery.indices[int(e.meta["pair_id"])]
        if int(herd.labels[q]) == int(herd.labels[g]):
            s1.append(inverted_residual_mean(e, herd.true_homography(q, g)))
    r = m.metrics["pairx_inverted_residual"]
    assert s1 and r.details["scored"] == len(s1) and r.value == pytest.approx(sum(s1) / len(s1))
    assert set(res.summary()["knn"]) == {"pairx_coverage", "pairx_inverted_residual"}


def test_homographies_need_one_synthherd() -> None:
    queries, _ = _views(SynthHerd("test", individuals=4, photos=3, progress=False))
    _, other = _views(SynthHerd("test", individuals=4, photos=3, seed=1, progress=False))
    pipe = xc.Pipeline(SPEC).fit(other)
    with pytest.raises(xc.InputError, match="photos of one data set with true_homography"):
        pipe.run(queries)


def test_pairx_explain_without_a_pair_says_what_it_needs() -> None:
    ex = xc.create("explainer", "pairx")
    with pytest.raises(xc.InputError, match="pair_image"):
        ex.explain(xc.Case(query_id=0, image=torch.rand(3, 32, 32)))
