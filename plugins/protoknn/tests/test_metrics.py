"""Metric and statistic components on hand-made inputs."""
import pytest
import torch

import xcorr_core as xc


def test_protoknn_accuracy_per_k():
    labels = torch.tensor([[0, 1, 1, 2], [2, 2, 0, 0], [1, 0, 0, 0]])
    targets = torch.tensor([1, 2, 0])
    r = xc.create("metric", "protoknn_accuracy", ks=[1, 3, 4]).compute(neighbour_labels=labels, targets=targets)
    assert r.details == {"k=1": pytest.approx(1 / 3), "k=3": pytest.approx(1.0), "k=4": pytest.approx(2 / 3)}
    assert r.value == pytest.approx(1 / 3) and r.ci is not None
    with pytest.raises(xc.InputError):
        xc.create("metric", "protoknn_accuracy", ks=[9]).compute(neighbour_labels=labels, targets=targets)


def test_prototype_variance():
    m = xc.create("statistic", "prototype_variance")
    assert m.compute(prototypes=torch.eye(4)).value == pytest.approx(0.5)
    assert m.compute(prototypes=torch.tensor([[1.0, 0.0], [-1.0, 0.0]])).value == pytest.approx(1.0)


def test_part_purity_by_hand():
    # 3 images, 2 prototypes, a 2 x 2 grid on 20 px images; parts: 0 at (5, 5), 1 at (15, 15)
    kps = torch.tensor([[[5.0, 5.0, 1], [15.0, 15.0, 1]]]).repeat(3, 1, 1)
    profiles = torch.tensor([[0.9, 0.5], [0.8, 0.6], [0.7, 0.7]])
    cells = torch.tensor([[0, 3], [0, 1], [0, 3]])  # prototype 0 always on part 0; prototype 1 on part 1, background, part 1
    r = xc.create("statistic", "prototype_part_purity", top=3).compute(profiles=profiles, peak_cells=cells, keypoints=kps,
                                                                      image_size=(20, 20), grid=(2, 2))
    assert r.per_sample.tolist() == pytest.approx([1.0, 2 / 3])
    assert r.value == pytest.approx(5 / 6) and r.details["background_share"] == pytest.approx(1 / 6)


def test_protoknn_accuracy_from_a_spec_on_synthbirds():
    """The metric in a pipeline spec reads the decisions' ranked neighbours: k = 1 is the first
    neighbour's label, and with k = decision.k the vote is the pipeline's own kNN decision."""
    from xcorr_core.data import SynthBirds

    spec = {"features": {"model": "birds"}, "decision": {"k": 5},
            "metrics": [{"name": "protoknn_accuracy", "config": {"ks": [1, 5]}}, {"name": "top1_accuracy"}]}
    res = xc.Pipeline(spec).fit(SynthBirds("train", per_class=5)).run(SynthBirds("test", per_class=2))
    m = res.methods["knn"]
    r = m.metrics["protoknn_accuracy"]
    assert r.value == pytest.approx(float((m.neighbour_labels[:, 0] == m.targets).float().mean()))
    assert r.details["k=5"] == pytest.approx(m.metrics["top1_accuracy"].value)
