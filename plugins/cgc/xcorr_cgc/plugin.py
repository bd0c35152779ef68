"""Hook implementations of the cgc plugin (the module its entry point names)."""
from __future__ import annotations

from typing import Any

import xcorr_core


@xcorr_core.hookimpl
def register_explainers(register: Any) -> None:
    from .components import GradCAMExplainer, GradXActExplainer

    register(GradCAMExplainer)
    register(GradXActExplainer)


@xcorr_core.hookimpl
def register_metrics(register: Any) -> None:
    from .components import ContentHeatmap, DeletionAUC, ExplanationConsistency, InsertionAUC, ViewConsistency

    for cls in (ContentHeatmap, InsertionAUC, DeletionAUC, ExplanationConsistency, ViewConsistency):
        register(cls)


@xcorr_core.hookimpl
def register_models(register: Any) -> None:
    from .pretrained import load_pretrained

    register("birds_cgc", lambda: load_pretrained("cgc"), "SynthBirds SmallResNet fine-tuned with CE + CGC (seed 0 of the shipped study)")
    register("birds_ce", lambda: load_pretrained("ce"), "SynthBirds SmallResNet fine-tuned with CE only, same budget (the study's baseline)")


@xcorr_core.hookimpl
def register_demo_sections(register: Any) -> None:
    from .demo import cgc_section

    register("CGC on SynthBirds", cgc_section)
