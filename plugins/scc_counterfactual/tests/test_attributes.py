"""Section 5: the part-attribute vocabulary, basis decomposition and the edit's top attribute."""
from __future__ import annotations

import pytest
import torch

from xcorr_core.data.synth_birds import ATTRIBUTE_NAMES, ATTRIBUTES, CLASS_ATTRIBUTES
from xcorr_scc_counterfactual.attributes import (
    AttributeClassifiers,
    PartAttributeSpace,
    attribute_accuracy,
    basis_decomposition,
    explain_edit,
    ground_truth,
    train_attribute_classifiers,
)


def test_vocabulary_and_ground_truth():
    space = PartAttributeSpace.from_attributes(ATTRIBUTES)
    assert len(space.names) == sum(len(v) for _, v in ATTRIBUTES.values()) == 27
    assert space.parts[space.names.index("beak_shape=hooked")] == "beak"
    labels = torch.tensor([[CLASS_ATTRIBUTES[0][a] for a in ATTRIBUTE_NAMES]])
    assert int(space.multi_hot(labels).sum()) == len(ATTRIBUTES)  # one value per attribute
    gt = ground_truth(space, CLASS_ATTRIBUTES, ATTRIBUTE_NAMES, 0, 1)
    differing = [a for a in ATTRIBUTE_NAMES if CLASS_ATTRIBUTES[0][a] != CLASS_ATTRIBUTES[1][a]]
    assert len(gt) == 2 * len(differing) and {space.names[t].split("=")[0] for t in gt} == set(differing)
    assert ground_truth(space, CLASS_ATTRIBUTES, ATTRIBUTE_NAMES, 3, 3) == set()


def test_basis_decomposition_recovers_a_nonnegative_combination():
    g = torch.Generator().manual_seed(0)
    space = PartAttributeSpace.from_attributes({"a": ("p", ("x", "y", "z")), "b": ("q", ("u", "v"))})
    a = AttributeClassifiers(weight=torch.randn(5, 12, generator=g), bias=torch.zeros(5), space=space)
    alpha = torch.tensor([[1.0, 0, 2.0, 0, 0.5], [0, 3.0, 0, 0, 0]])
    est = basis_decomposition(alpha @ a.weight, a)
    assert torch.allclose(est, alpha, atol=1e-4)


def test_top_attribute_of_an_edit():
    space = PartAttributeSpace.from_attributes({"beak": ("beak", ("short", "long")), "wing": ("wing", ("plain", "striped"))})
    a = AttributeClassifiers(weight=torch.eye(4), bias=torch.zeros(4), space=space)
    alpha = torch.tensor([[1.0, 0, 1.0, 0], [0, 1.0, 1.0, 0]])  # class 0: short beak; class 1: long beak; both plain wings
    q = torch.tensor([1.0, 0.0, 1.0, 0.0])  # a short beak (and plain wing) in the query cell
    d = torch.tensor([0.0, 1.0, 1.0, 0.0])  # a long beak in the distractor cell
    ex = explain_edit(alpha, a, q, d, 0, 1, ["beak"])
    assert ex.top == "beak=long" and set(ex.scores) == {"beak=short", "beak=long"}
    assert explain_edit(alpha, a, q, d, 0, 1, ["wing", "beak"]).top == "beak=long"
    with pytest.raises(ValueError):
        explain_edit(alpha, a, q, d, 0, 1, ["tail"])


def test_attribute_classifiers_learn_separable_attributes():
    g = torch.Generator().manual_seed(0)
    space = PartAttributeSpace.from_attributes({"a": ("p", ("x", "y", "z")), "b": ("q", ("u", "v"))})
    labels = torch.stack([torch.randint(3, (200,), generator=g), torch.randint(2, (200,), generator=g)], 1)
    feats = torch.cat([space.multi_hot(labels) * 3, torch.randn(200, 4, generator=g)], 1) + 0.3 * torch.randn(200, 9, generator=g)
    a = train_attribute_classifiers(feats[:150], labels[:150], space)
    assert attribute_accuracy(a, feats[150:], labels[150:]) > 0.95
