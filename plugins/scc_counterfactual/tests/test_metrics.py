"""Keypoint metrics on hand-computed cases, distractor planning, part clustering."""
from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import xcorr_core as xc
from xcorr_scc_counterfactual import Counterfactual, Edit
from xcorr_scc_counterfactual.distractors import confusion_matrix, most_confused, plan_distractors
from xcorr_scc_counterfactual.grid import cell_parts, cells_in_box, keypoint_cells
from xcorr_scc_counterfactual.metrics import InBox, NearKP, NumEdits, SameKP, edit_scores, part_clustering_accuracy


def test_keypoints_map_to_cells_like_the_authors():
    # 224 px, 7x7: cell = floor(coord / 32); invisible and outside keypoints are -1
    kp = torch.tensor([[31.9, 0.0, 1], [32.0, 0.0, 1], [223.9, 223.9, 1], [100.0, 100.0, 0], [224.0, 5.0, 1], [-1.0, 5.0, 1]])
    assert keypoint_cells(kp, (7, 7), 224).tolist() == [0, 1, 48, -1, -1, -1]
    parts = cell_parts(kp[None], (7, 7), 224)[0]
    assert parts.shape == (49, 6) and parts[0, 0] and parts[1, 1] and parts[48, 2] and int(parts.sum()) == 3
    inbox = cells_in_box(torch.tensor([0.0, 0.0, 64.0, 40.0]), (7, 7), 224)  # centres 16, 48 | 16
    assert torch.nonzero(inbox).flatten().tolist() == [0, 1]


def _cf(edits, n=2, success=True):
    return Counterfactual(method="t", query_class=0, target_class=1, edits=[Edit(query_cell=a, distractor=b, distractor_cell=c, score=0.0, log_prob_target=0.0) for a, b, c in edits],
                          success=success, reason="flipped" if success else "max_edits", grid=(2, 2), image_size=(20, 20), n_distractors=n,
                          prob_target=[0.1] * (len(edits) + 1), candidates=10, seconds=0.0, path="closed_form")


def test_near_same_kp_and_in_box_by_hand():
    # 20 px image, 2x2 grid (10 px cells). Parts: 0 "beak", 1 "wing".
    q_kp = torch.tensor([[2.0, 2.0, 1], [15.0, 3.0, 1]])  # beak in cell 0, wing in cell 1
    d_kp = torch.tensor([[[12.0, 12.0, 1], [3.0, 3.0, 1]],  # distractor 0: beak cell 3, wing cell 0
                         [[4.0, 14.0, 1], [5.0, 15.0, 0]]])  # distractor 1: beak cell 2, wing invisible
    cf = _cf([(0, 0, 3), (1, 1, 2), (2, 0, 0)])
    s = edit_scores(cf, q_kp, d_kp, torch.tensor([0.0, 0.0, 20.0, 9.0]), torch.tensor([[0.0, 0.0, 20.0, 20.0], [0.0, 0.0, 1.0, 1.0]]))
    assert s["near_kp"].tolist() == [1.0, 1.0, 0.5]  # edit 3: query cell 2 empty, distractor cell 0 holds the wing
    assert s["same_kp"].tolist() == [1.0, 0.0, 0.0]  # beak<-beak; wing<-beak; nothing<-wing
    assert s["in_box"].tolist() == [1.0, 0.5, 0.5]
    data = dict(explanations=[cf, _cf([(3, 1, 2)])], query_keypoints=[q_kp, q_kp], distractor_keypoints=[d_kp, d_kp])
    assert NearKP().compute(**data).value == pytest.approx((1 + 1 + 0.5 + 0.5) / 4)
    assert NearKP(NearKP.Config(mode="single")).compute(**data).value == pytest.approx((1 + 0.5) / 2)
    assert SameKP().compute(**data).value == pytest.approx(1 / 4)
    res = NumEdits().compute(explanations=[cf, _cf([(0, 0, 0)], success=False)])
    assert res.value == 3 and res.details["failures"] == 1
    with pytest.raises(xc.InputError, match="query_boxes"):
        InBox().compute(**data)
    with pytest.raises(xc.InputError):
        SameKP().compute(explanations=[cf], query_keypoints=[q_kp], distractor_keypoints=[])


def test_most_confused_class_and_plan():
    # 3 classes; class 0 confused with 2 twice, with 1 once; class 1 never wrong (ties -> soft probability)
    probs = torch.tensor([[0.1, 0.1, 0.8], [0.1, 0.0, 0.9], [0.2, 0.7, 0.1], [0.9, 0.05, 0.05],
                          [0.0, 0.7, 0.3], [0.3, 0.6, 0.1], [0.1, 0.2, 0.7]])
    labels = torch.tensor([0, 0, 0, 0, 1, 1, 2])
    assert confusion_matrix(probs.argmax(1), labels, 3)[0].tolist() == [1, 1, 2]
    dc = most_confused(probs, labels, "mean_probability")
    assert dc.tolist() == [2, 2, 1]  # class 1: 0.2 mean mass on 2 vs 0.15 on 0
    plan = plan_distractors(probs, labels, probs, labels, n=5, seed=3, class_rule="mean_probability", draw="correct_only")
    assert plan.skipped_wrong == 3 and plan.queries == [3, 4, 5, 6]
    assert plan.targets == [2, 2, 2, 1]
    assert plan.skipped_no_distractor == 0 and plan.distractors[0] == [6]  # the only correct image of class 2
    assert sorted(plan.distractors[3]) == [4, 5]
    assert plan == plan_distractors(probs, labels, probs, labels, n=5, seed=3, class_rule="mean_probability", draw="correct_only")


def test_authors_distractor_rules_by_hand():
    # class 0 confused once with 1 and once with 2 (a tie), class 1 never wrong, class 2 confused with 0
    probs = torch.tensor([[0.9, 0.1, 0.0], [0.2, 0.8, 0.0], [0.05, 0.0, 0.95],  # class 0: right, ->1, ->2
                          [0.0, 1.0, 0.0], [0.1, 0.9, 0.0],  # class 1: right, right
                          [0.6, 0.0, 0.4], [0.0, 0.1, 0.9], [0.0, 0.2, 0.8]])  # class 2: ->0, right, right
    labels = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2])
    # the authors: first maximum (1, not 2, for class 0; mean probability picks 2: 0.317 vs 0.3) and
    # none for class 1; mean probability gives class 1 its most probable other class, 0 (0.05 vs 0)
    assert most_confused(probs, labels).tolist() == [1, -1, 0]
    assert most_confused(probs, labels, "mean_probability").tolist() == [2, 0, 0]
    plan = plan_distractors(probs, labels, probs, labels, n=2, seed=0)
    # query 0 (class 0) gets class 1; queries 3, 4 (class 1, never confused) are skipped; 6, 7 get class 0
    assert plan.queries == [0, 6, 7] and plan.targets == [1, 0, 0] and plan.skipped_no_confusion == 2
    assert plan.skipped_wrong == 3
    # the authors' draw, replayed: per kept query 2 of the class's images in a seeded order, then the
    # misclassified ones dropped (of class 0 only image 0 is classified correctly)
    gen = torch.Generator().manual_seed(0)
    want = []
    for pool in ([3, 4], [0, 1, 2], [0, 1, 2]):
        drawn = torch.tensor(pool)[torch.randperm(len(pool), generator=gen)[:2]].tolist()
        want.append([i for i in drawn if i in (0, 3, 4)])
    assert plan.distractors == want and len(plan.distractors[0]) == 2
    correct = plan_distractors(probs, labels, probs, labels, n=2, seed=0, draw="correct_only")
    assert correct.distractors[1] == [0] and correct.distractors[2] == [0]  # only image 0 of class 0 is correct
    with pytest.raises(xc.InputError):
        most_confused(probs, labels, "nearest")  # type: ignore[arg-type]


def test_part_clustering_accuracy():
    g = torch.Generator().manual_seed(0)
    n, p = 30, 4
    kp = torch.zeros(n, p, 3)
    cells = torch.stack([torch.randperm(16, generator=g)[:p] for _ in range(n)])  # 4x4 grid, 40 px -> 10 px cells
    kp[..., 0] = (cells % 4).float() * 10 + 5
    kp[..., 1] = (cells // 4).float() * 10 + 5
    kp[..., 2] = 1
    parts = cell_parts(kp, (4, 4), 40).float()  # [n, 16, p]
    feats = torch.cat([parts, 0.3 * torch.ones(n, 16, 1)], -1) + 0.05 * torch.randn(n, 16, p + 1, generator=g)
    feats = feats.permute(0, 2, 1).reshape(n, p + 1, 4, 4)
    assert part_clustering_accuracy(feats, kp, 40, k=8) == pytest.approx(1.0)  # features that name the part
    noise = torch.randn(n, 8, 4, 4, generator=g)
    assert part_clustering_accuracy(noise, kp, 40, k=8) < 0.6


@given(st.integers(0, 10_000))
def test_same_kp_implies_near_kp(seed):
    g = torch.Generator().manual_seed(seed)
    kp = torch.rand(3, 5, 3, generator=g) * torch.tensor([40.0, 40.0, 1.0])
    kp[..., 2] = (kp[..., 2] > 0.3).float()
    cells = torch.randperm(16, generator=g)[:6].tolist()
    cf = Counterfactual(method="t", query_class=0, target_class=1,
                        edits=[Edit(query_cell=cells[k], distractor=k % 2, distractor_cell=cells[k + 3], score=0.0, log_prob_target=0.0) for k in range(3)],
                        success=True, reason="flipped", grid=(4, 4), image_size=(40, 40), n_distractors=2, prob_target=[0.1] * 4,
                        candidates=1, seconds=0.0, path="generic")
    s = edit_scores(cf, kp[0], kp[1:])
    assert bool((s["same_kp"] <= s["near_kp"]).all()) and bool((s["near_kp"][s["same_kp"] == 1] == 1).all())
    assert set(s["near_kp"].tolist()) <= {0.0, 0.5, 1.0}


def test_cub_part_groups_merge_left_and_right_by_hand():
    from xcorr_scc_counterfactual.metrics import CUB_PART_GROUPS, part_groups

    # 20 px image, 2x2 grid. Parts "left wing", "right wing", "beak" (CUB names).
    names = ["left wing", "right wing", "beak"]
    q_kp = torch.tensor([[2.0, 2.0, 1], [0.0, 0.0, 0], [15.0, 3.0, 1]])  # left wing in cell 0, beak in cell 1
    d_kp = torch.tensor([[[0.0, 0.0, 0], [12.0, 12.0, 1], [3.0, 13.0, 1]]])  # right wing in cell 3, beak in cell 2
    cf = _cf([(0, 0, 3), (1, 0, 2)], n=1)  # left wing <- right wing; beak <- beak
    groups = part_groups(names)
    assert groups.tolist() == [0, 0, 1]  # auto: CUB names, left/right merged
    assert edit_scores(cf, q_kp, d_kp)["same_kp"].tolist() == [0.0, 1.0]  # every part its own
    assert edit_scores(cf, q_kp, d_kp, groups=groups)["same_kp"].tolist() == [1.0, 1.0]
    data = dict(explanations=[cf], query_keypoints=[q_kp], distractor_keypoints=[d_kp], part_names=names)
    assert SameKP().compute(**data).value == 1.0  # on by default for CUB part names
    assert SameKP(SameKP.Config(part_groups="none")).compute(**data).value == 0.5
    assert part_groups(["beak", "wing"]) is None  # SynthBirds' names: no grouping
    assert len(set(CUB_PART_GROUPS.values())) == 12 and len(CUB_PART_GROUPS) == 15
    assert part_groups(["a", "b"], {"a": "x", "b": "x"}).tolist() == [0, 0]
    with pytest.raises(xc.InputError, match="no group"):
        part_groups(["left wing", "right wing", "tailfin"], "cub")
