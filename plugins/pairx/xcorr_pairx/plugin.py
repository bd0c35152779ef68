"""Hook implementations of the pairx plugin (the module its entry point names)."""
from __future__ import annotations

from typing import Any

import xcorr_core


@xcorr_core.hookimpl
def register_explainers(register: Any) -> None:
    from .explain import PairXExplainer

    register(PairXExplainer)


@xcorr_core.hookimpl
def register_metrics(register: Any) -> None:
    from .metrics import InvertedResidualMean, MatchCoverage, RankCorrelation, Separability

    for cls in (InvertedResidualMean, MatchCoverage, RankCorrelation, Separability):
        register(cls)


@xcorr_core.hookimpl
def register_demo_sections(register: Any) -> None:
    from .demo import pairx_section

    register("PAIR-X on SynthHerd", pairx_section)
