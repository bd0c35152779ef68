"""Hook implementations of the chm_corr plugin (the module its entry point names)."""
from __future__ import annotations

from typing import Any

import xcorr_core

from .components import CHMCorrExplainer, CHMCorrPlusReRanker, CHMCorrReRanker, CHMMatcher, CHMNNExplainer


@xcorr_core.hookimpl
def register_rerankers(register: Any) -> None:
    register(CHMCorrReRanker)
    register(CHMCorrPlusReRanker)


@xcorr_core.hookimpl
def register_matchers(register: Any) -> None:
    register(CHMMatcher)


@xcorr_core.hookimpl
def register_explainers(register: Any) -> None:
    register(CHMCorrExplainer)
    register(CHMNNExplainer)


@xcorr_core.hookimpl
def register_demo_sections(register: Any) -> None:
    from .demo import chm_corr_section

    register("CHM-Corr and CHM-Corr+ vs kNN and EMD-Corr", chm_corr_section)
