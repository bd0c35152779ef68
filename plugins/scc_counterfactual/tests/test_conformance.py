"""scc's explainers and edit metrics through the core's conformance kit, on cases as a pipeline
builds them (the shipped SynthBirds model, gallery distractors of one other class)."""

import torch

from xcorr_core.testing import check_explainer, check_metric
from xcorr_scc_counterfactual.explainer import GoyalExplainer, SCCExplainer
from xcorr_scc_counterfactual.metrics import InBox, NearKP, NumEdits, SameKP


def _cases(birds, model, cases):
    out = []
    for c in cases[:2]:
        other = (c.prediction + 1) % birds.num_classes
        ids = (birds.labels == other).nonzero().flatten()[:3]
        out.append(c.model_copy(update={"model": model, "distractors": birds.images[ids].float() / 255, "distractor_ids": ids,
                                        "distractor_class": other}))
    return out


def test_scc_components_conform(xcorr_birds, xcorr_birds_model, xcorr_cases) -> None:
    cases = _cases(xcorr_birds, xcorr_birds_model, xcorr_cases)
    check_explainer(SCCExplainer, cases=cases, model=xcorr_birds_model)
    check_explainer(GoyalExplainer, cases=cases, model=xcorr_birds_model)
    cfs = [SCCExplainer().explain(c) for c in cases]
    data = {"explanations": cfs, "query_keypoints": xcorr_birds.keypoints[[c.query_id for c in cfs]],
            "distractor_keypoints": [xcorr_birds.keypoints[torch.tensor(c.distractor_ids)] for c in cfs],
            "query_boxes": xcorr_birds.boxes[[c.query_id for c in cfs]],
            "distractor_boxes": [xcorr_birds.boxes[torch.tensor(c.distractor_ids)] for c in cfs]}
    for cls in (NearKP, SameKP, InBox, NumEdits):
        check_metric(cls, data=data)
