"""cgc's explainers and metrics through the core's conformance kit (fixtures from its pytest plugin)."""

import torch

from xcorr_core.testing import check_explainer, check_metric
from xcorr_cgc.components import ContentHeatmap, DeletionAUC, GradCAMExplainer, GradXActExplainer, InsertionAUC, ViewConsistency


def test_explainers_conform(xcorr_cases, xcorr_birds_model) -> None:
    cases = [c.model_copy(update={"model": xcorr_birds_model}) for c in xcorr_cases[:2]]  # as a pipeline hands them
    for cls in (GradCAMExplainer, GradXActExplainer):
        check_explainer(cls, cases=cases, model=xcorr_birds_model)
        check_explainer(cls, cases=cases, model=xcorr_birds_model, config={"target": "prediction", "engine": "captum"})


def test_metrics_conform(xcorr_birds, xcorr_birds_model) -> None:
    images = xcorr_birds.images[:4].float() / 255
    maps = GradCAMExplainer().explain_images(xcorr_birds_model, images).maps
    check_metric(ContentHeatmap, data={"maps": maps, "boxes": xcorr_birds.boxes[:4]})
    for cls in (InsertionAUC, DeletionAUC):
        check_metric(cls, data={"model": xcorr_birds_model, "images": images, "maps": maps}, config={"steps": 7})
    explain = lambda views: GradCAMExplainer().explain_images(xcorr_birds_model, views).maps  # noqa: E731
    check_metric(ViewConsistency, data={"images": images, "maps": maps, "explain": explain})
    assert torch.isfinite(maps).all()
