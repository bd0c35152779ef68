"""Counterfactual metrics from a pipeline spec (issue 28's outside check): the scc explainer on the
pipeline's model with gallery distractors, scored by Near-KP / Same-KP / in-box / #Edits against
SynthBirds' keypoints and boxes, through Pipeline(spec).fit(gallery).run(queries)."""

import pytest

import xcorr_core as xc
from xcorr_core.data import SynthBirds
from xcorr_scc_counterfactual import Counterfactual
from xcorr_scc_counterfactual.metrics import edit_scores


def test_counterfactual_metrics_from_a_spec() -> None:
    gallery, queries = SynthBirds("train", per_class=8), SynthBirds("test", per_class=1)
    spec = {"features": {"model": "birds"}, "explainers": [{"name": "scc"}], "explain": {"correct": 3, "wrong": 0, "distractors": 5},
            "metrics": [{"name": "near_kp", "config": {"explainer": "scc"}}, {"name": "same_kp", "config": {"explainer": "scc"}},
                        {"name": "in_box", "config": {"explainer": "scc"}}, {"name": "num_edits", "config": {"explainer": "scc"}}]}
    res = xc.Pipeline(spec).fit(gallery).run(queries)
    summary = res.summary()["knn"]
    assert set(summary) == {"near_kp", "same_kp", "in_box", "num_edits"}
    cfs = res.methods["knn"].explanations
    assert len(cfs) == 3 and all(isinstance(c, Counterfactual) for c in cfs)
    for c in cfs:
        assert 1 <= len(c.distractor_ids) <= 5 and c.num_edits >= 1  # success or not (the authors' pre-filter can run dry)
        # the distractors are gallery images of one class other than the query's prediction
        classes = {int(gallery.labels[i]) for i in c.distractor_ids}
        assert classes == {c.target_class} and c.target_class != c.prediction
    # Near-KP by hand: every edit of every counterfactual, keypoints from the data sets by id
    near = [s for c in cfs for s in edit_scores(c, queries.keypoints[c.query_id], gallery.keypoints[c.distractor_ids])["near_kp"].tolist()]
    assert summary["near_kp"] == pytest.approx(sum(near) / len(near))
    ok = [c.num_edits for c in cfs if c.success]
    if ok:  # #Edits counts the counterfactuals that flipped the decision; failures are counted apart
        assert summary["num_edits"] == pytest.approx(sum(ok) / len(ok))
