"""Test helpers for xcorr and for plugin authors (needs the ``[test]`` extra: pytest, hypothesis).

`hostile`: hypothesis strategies that poison one tensor argument of a call with non-finite or
out-of-range values, and the check that the call answers with a typed xcorr error or a finite,
documented result.

`conformance`: ``check_reranker``, ``check_matcher``, ``check_explainer`` and ``check_metric`` run a
component class through the contract a pipeline relies on, and name what to fix when it breaks it.
"""
from __future__ import annotations

from .conformance import (ConformanceError, check_explainer, check_matcher, check_metric, check_reranker, check_statistic,
                          default_metric_data, random_maps)
from .hostile import POISONS, Outcome, assert_typed_or_finite, hostile_cases, poison, sweep

__all__ = ["ConformanceError", "check_explainer", "check_matcher", "check_metric", "check_reranker", "check_statistic", "default_metric_data",
           "random_maps", "POISONS", "Outcome", "assert_typed_or_finite", "hostile_cases", "poison", "sweep"]
