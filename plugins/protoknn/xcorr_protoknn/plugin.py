"""Hook implementations of the protoknn plugin (the module its entry point names)."""
from __future__ import annotations

from typing import Any

import xcorr_core

from .components import ProtoKNNAccuracy, ProtoKNNExplainer, PrototypePartPurity, PrototypeVariance


@xcorr_core.hookimpl
def register_explainers(register: Any) -> None:
    register(ProtoKNNExplainer)


@xcorr_core.hookimpl
def register_metrics(register: Any) -> None:
    register(ProtoKNNAccuracy)


@xcorr_core.hookimpl
def register_statistics(register: Any) -> None:
    register(PrototypeVariance)
    register(PrototypePartPurity)


@xcorr_core.hookimpl
def register_models(register: Any) -> None:
    from .pretrained import load_pretrained

    register("protoknn_birds", load_pretrained, "ProtoKNN on the SynthBirds SmallResNet: profiles of 128 prototypes at layer 'profile'")


@xcorr_core.hookimpl
def register_demo_sections(register: Any) -> None:
    from .demo import protoknn_section

    register("ProtoKNN on SynthBirds", protoknn_section)
