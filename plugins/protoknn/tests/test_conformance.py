"""protoknn's explainer and accuracy metric through the core's conformance kit."""

from xcorr_core.testing import check_explainer, check_metric
from xcorr_protoknn.components import ProtoKNNAccuracy, ProtoKNNExplainer


def test_protoknn_components_conform(xcorr_cases) -> None:
    check_explainer(ProtoKNNExplainer, cases=xcorr_cases[:2])
    check_metric(ProtoKNNAccuracy)
