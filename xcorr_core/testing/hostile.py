"""Hostile inputs for a public function: poison one tensor argument, expect a typed error or a finite result.

A recipe is a zero-argument function returning ``(call, kwargs)`` with valid arguments; a case
names one tensor argument and one poison (`POISONS`). `assert_typed_or_finite` runs the call and
accepts exactly two outcomes: an `XcorrError` (the function refused the input and said why) or a
result whose every floating tensor is finite (the function handled it). Anything else — a raw
RuntimeError/IndexError from deep inside torch, or NaN leaking into a result — fails the test and
names the recipe, argument and poison. Depends on torch, hypothesis and the core's errors.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import torch
from hypothesis import strategies as st
from pydantic import BaseModel

from ..errors import XcorrError

__all__ = ["POISONS", "Outcome", "poison", "hostile_cases", "assert_typed_or_finite", "sweep"]

#: what a poisoned argument holds: one NaN / +inf / -inf element, every element x 1e30, negated, x 255
#: (0-255 images where [0, 1] is expected), or an integer tensor
POISONS = ("nan", "inf", "-inf", "huge", "negative", "x255", "int")

Recipe = Callable[[], tuple[Callable[..., Any], dict[str, Any]]]


def poison(t: torch.Tensor, kind: str, at: float = 0.5) -> torch.Tensor:
    """A copy of ``t`` poisoned by ``kind`` (one of `POISONS`); single-element poisons go to the
    element at relative position ``at`` of the flattened tensor."""
    if kind == "int":
        return (t * 10).round().to(torch.int64) if t.is_floating_point() else t
    out = t.detach().clone().to(torch.float32 if not t.is_floating_point() else t.dtype)
    if kind in ("nan", "inf", "-inf"):
        flat = out.view(-1)
        if flat.numel():
            flat[min(flat.numel() - 1, int(at * flat.numel()))] = float(kind)
        return out
    if kind == "huge":
        return out * 1e30 + 1e30
    if kind == "negative":
        return -out - 1.0
    if kind == "x255":
        return out * 255.0 + 1.0
    raise ValueError(f"unknown poison {kind!r}")


def hostile_cases(recipes: Mapping[str, tuple[Recipe, Iterable[str]]]) -> st.SearchStrategy[tuple[str, str, str, float]]:
    """Draw ``(recipe name, argument, poison, position)`` over every tensor argument of every recipe."""
    pairs = [(name, arg) for name, (_, args) in recipes.items() for arg in args]
    return st.tuples(st.sampled_from(pairs), st.sampled_from(POISONS), st.floats(0, 1)).map(lambda c: (*c[0], c[1], c[2]))


def tensors_in(value: Any, *, nonfinite_floats: bool = False) -> Iterable[torch.Tensor]:
    """Every tensor inside ``value`` (pydantic models, mappings, lists, tuples), depth first; with
    ``nonfinite_floats`` also each non-finite plain float, as a 0-d tensor."""
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, BaseModel):
        for v in value.__dict__.values():
            yield from tensors_in(v, nonfinite_floats=nonfinite_floats)
    elif isinstance(value, Mapping):
        for v in value.values():
            yield from tensors_in(v, nonfinite_floats=nonfinite_floats)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from tensors_in(v, nonfinite_floats=nonfinite_floats)
    elif nonfinite_floats and isinstance(value, float) and not torch.isfinite(torch.tensor(value)):
        yield torch.tensor(value)


@dataclass
class Outcome:
    """How a hostile call ended: ``"refused"`` (an XcorrError, kept in ``error``) or ``"finite"``."""

    kind: Literal["refused", "finite"]
    error: XcorrError | None = None
    result: Any = None


def assert_typed_or_finite(recipes: Mapping[str, tuple[Recipe, Iterable[str]]], name: str, arg: str, kind: str, at: float = 0.5,
                           *, allow_nonfinite: Mapping[str, str] | None = None) -> Outcome:
    """Run recipe ``name`` with argument ``arg`` poisoned by ``kind``; fail unless the call raises an
    `XcorrError` or returns only finite floating tensors. ``allow_nonfinite`` maps recipe names to
    the documented reason their result may hold NaN/inf (e.g. an AUC of a constant map is NaN); a
    key ``"name:poison"`` allows it for that poison only."""
    make, _ = recipes[name]
    fn, kwargs = make()
    if arg not in kwargs or not isinstance(kwargs[arg], torch.Tensor):
        raise AssertionError(f"recipe {name!r} has no tensor argument {arg!r}")
    kwargs = {**kwargs, arg: poison(kwargs[arg], kind, at)}
    where = f"{name}({arg}={kind})"
    try:
        result = fn(**kwargs)
    except XcorrError as exc:
        if not str(exc).strip():
            raise AssertionError(f"{where}: {type(exc).__name__} without a message") from exc
        return Outcome("refused", error=exc)
    except Exception as exc:  # noqa: BLE001 - the point: any other error is a defect
        raise AssertionError(f"{where} raised {type(exc).__name__}: {exc}; expected an xcorr error or a finite result") from exc
    bad = [t for t in tensors_in(result, nonfinite_floats=True) if t.is_floating_point() and not bool(torch.isfinite(t).all())]
    if bad and not (allow_nonfinite and (name in allow_nonfinite or f"{name}:{kind}" in allow_nonfinite)):
        raise AssertionError(f"{where} returned non-finite values without an error")
    return Outcome("finite", result=result)



def sweep(recipes: Mapping[str, tuple[Recipe, Iterable[str]]], *, allow_nonfinite: Mapping[str, str] | None = None,
          at: float = 0.5) -> dict[tuple[str, str, str], str]:
    """Every (recipe, argument, poison) once: ``"refused: ..."``, ``"finite"`` or ``"DEFECT: ..."``, for a
    plugin author to see at a glance what a hypothesis run would stop at one by one."""
    out = {}
    for name, (_, args) in recipes.items():
        for arg in args:
            for kind in POISONS:
                try:
                    o = assert_typed_or_finite(recipes, name, arg, kind, at, allow_nonfinite=allow_nonfinite)
                    out[(name, arg, kind)] = f"refused: {o.error}" if o.kind == "refused" else "finite"
                except AssertionError as exc:
                    out[(name, arg, kind)] = f"DEFECT: {exc}"
    return out
