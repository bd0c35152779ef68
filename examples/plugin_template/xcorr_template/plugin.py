"""The module the entry point names: one hook implementation per kind."""
from __future__ import annotations

from typing import Any

import xcorr_core

from .components import ArgmaxMatcher, ErrorRate, PatchCosineReRanker, VoteExplainer


@xcorr_core.hookimpl
def register_matchers(register: Any) -> None:
    register(ArgmaxMatcher)


@xcorr_core.hookimpl
def register_rerankers(register: Any) -> None:
    register(PatchCosineReRanker)


@xcorr_core.hookimpl
def register_explainers(register: Any) -> None:
    register(VoteExplainer)


@xcorr_core.hookimpl
def register_metrics(register: Any) -> None:
    register(ErrorRate)
