"""protoknn's explainer, its accuracy metric and its two statistics through the core's conformance kit."""
import torch

from xcorr_core.testing import check_explainer, check_metric, check_statistic
from xcorr_protoknn.components import ProtoKNNAccuracy, ProtoKNNExplainer, PrototypePartPurity, PrototypeVariance


def test_protoknn_components_conform(xcorr_cases) -> None:
    check_explainer(ProtoKNNExplainer, cases=xcorr_cases[:2])
    check_metric(ProtoKNNAccuracy)


def test_protoknn_statistics_conform() -> None:
    g = torch.Generator().manual_seed(0)
    check_statistic(PrototypeVariance, data={"prototypes": torch.randn(16, 8, generator=g)})
    kps = torch.tensor([[[5.0, 5.0, 1], [15.0, 15.0, 1]]]).repeat(6, 1, 1)
    check_statistic(PrototypePartPurity, config={"top": 3},
                    data={"profiles": torch.rand(6, 4, generator=g), "peak_cells": torch.randint(0, 4, (6, 4), generator=g),
                          "keypoints": kps, "image_size": (20, 20), "grid": (2, 2)})
