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
    from .metrics import InvertedResidualMean, MatchCoverage

    register(InvertedResidualMean)
    register(MatchCoverage)


@xcorr_core.hookimpl
def register_statistics(register: Any) -> None:
    """Analyses over a whole set of pairs (one value per study, not per query)."""
    from .metrics import RankCorrelation, Separability

    register(RankCorrelation)
    register(Separability)


@xcorr_core.hookimpl
def register_demo_sections(register: Any) -> None:
    from .demo import pairx_section

    register("PAIR-X on SynthHerd", pairx_section)
