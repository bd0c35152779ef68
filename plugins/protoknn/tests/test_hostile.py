"""Every public tensor function of protoknn under non-finite and out-of-range values (issue 27):
a typed xcorr error, or a finite result."""
from __future__ import annotations

from typing import Any

import torch
from hypothesis import given, settings

from xcorr_core.models import SmallResNet
from xcorr_core.testing import assert_typed_or_finite, hostile_cases
from xcorr_protoknn import (ClusterLoss, MarginLoss, ProtoKNNClassifier, ProtoKNNLoss, ProtoKNNNet, ProxyAnchorLoss, TrainConfig,
                            class_affiliation, contributions, encode, gumbel_affiliation, patch_costs, project_prototypes,
                            prototype_variance, sinkhorn_assignment, vote)


def _net() -> ProtoKNNNet:
    torch.manual_seed(0)
    return ProtoKNNNet(SmallResNet(4, widths=(8, 8, 16, 16)), "layer4", 16, dim=8, prototypes=12, prototype_steps=20, seed=0).eval()


def _g(*shape: int) -> torch.Tensor:
    return torch.rand(*shape, generator=torch.Generator().manual_seed(sum(shape)))


LABELS = torch.tensor([0, 0, 1, 1, 2, 2])


def _classifier(**kw: Any) -> Any:
    return ProtoKNNClassifier(**kw).predict(_g(3, 12), k=3)


def _affil() -> dict[str, Any]:
    E = gumbel_affiliation(_g(6, 12), gumbel=torch.zeros(6, 12))
    return {"E": E, "labels": LABELS}


def _sinkhorn(**kw: Any) -> Any:
    return sinkhorn_assignment(**kw)


def _sinkhorn_args() -> dict[str, Any]:
    classes, _, _, affiliation = class_affiliation(**_affil())
    return {"cost": _g(6, 12), "labels": LABELS, "affiliation": affiliation, "classes": classes}


RECIPES: dict[str, tuple[Any, list[str]]] = {
    "ProtoKNNNet.forward": (lambda: (_net(), {"images": _g(2, 3, 32, 32)}), ["images"]),
    "ProtoKNNNet.outputs": (lambda: (_net().outputs, {"images": _g(2, 3, 32, 32)}), ["images"]),
    "prototype_variance": (lambda: (prototype_variance, {"p": _g(12, 8)}), ["p"]),
    "MarginLoss": (lambda: (MarginLoss(3), {"x": _g(6, 8), "labels": LABELS}), ["x", "labels"]),
    "ProxyAnchorLoss": (lambda: (ProxyAnchorLoss(3, 8), {"x": _g(6, 8), "labels": LABELS}), ["x", "labels"]),
    "ClusterLoss": (lambda: (ClusterLoss(), {"profiles": _g(6, 12), "cosines": _g(6, 12, 4) * 2 - 1, "labels": LABELS}),
                    ["profiles", "cosines", "labels"]),
    "ProtoKNNLoss": (lambda: (ProtoKNNLoss(3, 8, TrainConfig()), {"out": None}), []),
    "gumbel_affiliation": (lambda: (gumbel_affiliation, {"profiles": _g(6, 12), "gumbel": _g(6, 12)}), ["profiles", "gumbel"]),
    "class_affiliation": (lambda: (class_affiliation, _affil()), ["E", "labels"]),
    "sinkhorn_assignment": (lambda: (_sinkhorn, _sinkhorn_args()), ["cost", "labels", "affiliation", "classes"]),
    "patch_costs": (lambda: (patch_costs, {"cosines": _g(6, 12, 4) * 2 - 1}), ["cosines"]),
    "encode": (lambda: (lambda **kw: encode(_net(), **kw), {"images": _g(2, 3, 32, 32)}), ["images"]),
    "project_prototypes": (lambda: (lambda **kw: project_prototypes(_net(), **kw), {"images": _g(4, 3, 32, 32)}), ["images"]),
    "ProtoKNNClassifier": (lambda: (_classifier, {"profiles": _g(6, 12), "labels": LABELS}), ["profiles", "labels"]),
    "ProtoKNNClassifier.predict": (lambda: (lambda **kw: ProtoKNNClassifier(_g(6, 12), LABELS).predict(k=3, **kw),
                                            {"profiles": _g(3, 12)}), ["profiles"]),
    "vote": (lambda: (vote, {"labels": torch.tensor([[0, 1, 1], [2, 2, 0]]), "distances": _g(2, 3)}), ["labels", "distances"]),
    "contributions": (lambda: (contributions, {"query": _g(12), "positive": _g(12), "negative": _g(12)}),
                      ["query", "positive", "negative"]),
}
del RECIPES["ProtoKNNLoss"]  # its inputs are a ProtoOutput: covered through ClusterLoss / MarginLoss / ProxyAnchorLoss


@settings(max_examples=60)
@given(hostile_cases(RECIPES))
def test_hostile_inputs(case: tuple[str, str, str, float]) -> None:
    assert_typed_or_finite(RECIPES, *case)
