"""Hook implementations of the scc_counterfactual plugin (the module its entry point names)."""
from __future__ import annotations

from typing import Any

import xcorr_core


@xcorr_core.hookimpl
def register_explainers(register: Any) -> None:
    from .explainer import GoyalExplainer, SCCExplainer

    register(SCCExplainer)
    register(GoyalExplainer)


@xcorr_core.hookimpl
def register_metrics(register: Any) -> None:
    from .metrics import InBox, NearKP, NumEdits, SameKP

    for cls in (NearKP, SameKP, NumEdits, InBox):
        register(cls)


@xcorr_core.hookimpl
def register_demo_sections(register: Any) -> None:
    from .demo import scc_section

    register("Semantically consistent counterfactuals on SynthBirds", scc_section)
