"""Test helpers for xcorr and for plugin authors (needs the ``[test]`` extra: pytest, hypothesis).

`hostile`: hypothesis strategies that poison one tensor argument of a call with non-finite or
out-of-range values, and the check that the call answers with a typed xcorr error or a finite,
documented result.
"""
from __future__ import annotations

from .hostile import POISONS, Outcome, assert_typed_or_finite, hostile_cases, poison, sweep

__all__ = ["POISONS", "Outcome", "assert_typed_or_finite", "hostile_cases", "poison", "sweep"]
