"""Hook implementations of the emd_corr plugin (the module its entry point names)."""
from __future__ import annotations

from typing import Any

import xcorr_core

from .components import EMDCorrExplainer, EMDCorrReRanker, ExplanationDiversity


@xcorr_core.hookimpl
def register_rerankers(register: Any) -> None:
    register(EMDCorrReRanker)


@xcorr_core.hookimpl
def register_explainers(register: Any) -> None:
    register(EMDCorrExplainer)


@xcorr_core.hookimpl
def register_metrics(register: Any) -> None:
    register(ExplanationDiversity)


@xcorr_core.hookimpl
def register_demo_sections(register: Any) -> None:
    from .demo import emd_corr_section

    register("EMD-Corr vs kNN", emd_corr_section)
