"""The component contract as checks a plugin author runs in their tests.

``check_reranker(cls)``, ``check_matcher(cls)``, ``check_explainer(cls, cases=...)`` and
``check_metric(cls, data=...)`` (``check_statistic`` for study-level statistics) build the component from its default config (or ``config``), call
it the way a pipeline does, and raise `ConformanceError` (an AssertionError, so pytest shows it as a
failed test) naming the broken rule and what to fix. What is checked, for every kind:

- the class: a subclass of its kind with ``name``, ``summary`` and a `StrictConfig` ``Config`` whose
  defaults validate and which refuses unknown fields;
- the output: its result type, shapes and dtypes, finite values, tensors on the inputs' device;
- determinism: two calls after the same ``torch.manual_seed`` give equal results (fields that time
  the run, ``seconds`` / ``*_seconds`` / ``*_ms``, excepted);
- typed errors: malformed input (wrong rank, NaN) raises an `XcorrError`, never a bare exception;
- kind-specific rules: a ranking's ``order`` is a permutation of its candidates and sorts its
  scores; ``rerank_many`` agrees with ``rerank``; an explanation survives a JSON round trip; no
  hook stays on a model after an explainer raised.

The inputs are small random maps by default (``channels``, ``grid``, ``candidates``); pass your own
when a component needs particular ones (e.g. a learned head on 256 channels).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from pydantic import BaseModel, ValidationError

from ..components import BatchedReRanker, Case, Component, Explainer, Matcher, Metric, ReRanker, Statistic, StrictConfig
from ..errors import ConfigError, XcorrError
from ..results import Explanation, Matches, MetricResult, Ranking
from .hostile import tensors_in

__all__ = ["ConformanceError", "check_reranker", "check_matcher", "check_explainer", "check_metric", "random_maps"]


class ConformanceError(AssertionError):
    """A component broke the contract; the message names the rule and what to fix."""


def _fail(cls: type, rule: str, fix: str) -> None:
    raise ConformanceError(f"{cls.__name__} ({getattr(cls, 'name', '?')}): {rule}. Fix: {fix}")


def random_maps(channels: int = 256, grid: tuple[int, int] = (7, 7), candidates: int = 6, *, seed: int = 0,
                device: str | torch.device = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """Non-negative (post-ReLU-like) float32 maps: query `[C, H, W]` and candidates `[N, C, H, W]`."""
    g = torch.Generator().manual_seed(seed)
    q = torch.rand(channels, *grid, generator=g)
    c = torch.rand(candidates, channels, *grid, generator=g)
    return q.to(device), c.to(device)


# -- shared rules -----------------------------------------------------------------------------

def _build(cls: type, kind: type, config: dict[str, Any] | None) -> Component:
    if not (isinstance(cls, type) and issubclass(cls, kind)):
        raise ConformanceError(f"{cls!r} is not a subclass of xcorr_core.{kind.__name__}. Fix: subclass it")
    for attr in ("name", "summary"):
        if not isinstance(getattr(cls, attr, None), str) or not getattr(cls, attr):
            _fail(cls, f"class attribute {attr!r} is missing or empty", f"set {attr} = '...' on the class")
    if not (isinstance(cls.Config, type) and issubclass(cls.Config, StrictConfig)):
        _fail(cls, "Config is not a StrictConfig", "derive the nested Config from xcorr_core.StrictConfig")
    if config is None:  # a field without a default is allowed; the check then needs config=
        try:
            cls.Config()
        except (ValidationError, ConfigError) as exc:
            _fail(cls, f"its default config does not validate ({exc}); pass config= to the check "
                       "if a field has no default by design", "give every field a valid default")
    try:
        cls.Config(**{"no_such_field_xcorr": 1})
    except (ValidationError, ConfigError):
        pass
    else:
        _fail(cls, "Config accepts an unknown field", "keep StrictConfig's extra='forbid'")
    try:
        return cls(cls.Config(**(config or {})))
    except (ValidationError, ConfigError) as exc:
        raise ConformanceError(f"{cls.__name__}: the config given to the check is invalid: {exc}") from None


def _tensors(value: Any) -> list[torch.Tensor]:
    return list(tensors_in(value))


def _same(a: Any, b: Any) -> bool:
    ta, tb = _tensors(a), _tensors(b)
    if len(ta) != len(tb) or any(x.shape != y.shape or x.dtype != y.dtype or not _equal(x, y) for x, y in zip(ta, tb)):
        return False
    if isinstance(a, BaseModel) and isinstance(b, BaseModel):
        plain = {n for n, f in type(a).model_fields.items() if not _tensors(getattr(a, n)) and not _is_timing(n)}
        return all(getattr(a, n) == getattr(b, n) or _nan_equal(getattr(a, n), getattr(b, n)) for n in plain)
    return True


def _is_timing(field: str) -> bool:
    """Fields that measure the run rather than hold its result (``seconds``, ``*_seconds``, ``*_ms``):
    determinism is not asked of them."""
    return field == "seconds" or field.endswith(("_seconds", "_ms"))


def _equal(x: torch.Tensor, y: torch.Tensor) -> bool:
    """Bitwise-equal values, NaN equal to NaN (a reproducible NaN is reported by the finiteness rule)."""
    if x.is_floating_point() or x.is_complex():
        return bool(torch.isclose(x, y, rtol=0, atol=0, equal_nan=True).all())
    return torch.equal(x, y)


def _nan_equal(x: Any, y: Any) -> bool:
    return isinstance(x, float) and isinstance(y, float) and x != x and y != y


def _check_result_tensors(cls: type, result: Any, device: torch.device, what: str) -> None:
    for t in _tensors(result):
        if t.device != device:
            _fail(cls, f"{what} holds a tensor on {t.device}, the inputs were on {device}", "create results on the inputs' device")
        if t.is_floating_point() and not torch.isfinite(t).all():
            _fail(cls, f"{what} holds non-finite values on finite input", "guard divisions and logs, or raise an XcorrError")


def _deterministic(cls: type, call: Callable[[], Any], what: str) -> Any:
    torch.manual_seed(0)
    first = call()
    torch.manual_seed(0)
    second = call()
    if not _same(first, second):
        _fail(cls, f"two calls of {what} after the same torch.manual_seed differ",
              "draw randomness from torch's global generator or a seeded torch.Generator, never from time or os entropy")
    return first


def _typed_error(cls: type, call: Callable[[], Any], bad: str) -> None:
    try:
        call()
    except XcorrError:
        return
    except Exception as exc:  # noqa: BLE001 - the point of the check
        _fail(cls, f"{bad} raised {type(exc).__name__}: {exc}",
              "validate inputs first (xcorr_core.validation.check_tensor) so bad input is an InputError")
    else:
        _fail(cls, f"{bad} was accepted", "validate inputs (xcorr_core.validation.check_tensor) and raise InputError")


def _nan(t: torch.Tensor) -> torch.Tensor:
    t = t.clone()
    t.view(-1)[0] = float("nan")
    return t


# -- re-rankers ---------------------------------------------------------------------------------

def _check_ranking(cls: type, r: Any, n: int, hw_q: int, hw_c: int, device: torch.device, what: str) -> None:
    if not isinstance(r, Ranking):
        _fail(cls, f"{what} returned {type(r).__name__}, not a Ranking", "return xcorr_core.Ranking(order, scores, pairs, weights)")
    if sorted(r.order.tolist()) != list(range(n)):
        _fail(cls, f"{what}: order {r.order.tolist()[:10]} is not a permutation of its {n} candidates",
              "return order = scores.argsort(descending=True), one position per candidate")
    if r.scores.shape != (n,):
        _fail(cls, f"{what}: scores have shape {list(r.scores.shape)}, expected [{n}]", "one score per input candidate, in input order")
    ranked = r.scores[r.order]
    if (ranked[1:] > ranked[:-1]).any():
        _fail(cls, f"{what}: order does not sort the scores best first", "order must list candidates by descending score")
    if r.pairs.ndim != 3 or r.pairs.shape[0] != n or r.pairs.shape[2] != 2:
        _fail(cls, f"{what}: pairs have shape {list(r.pairs.shape)}, expected [{n}, L, 2]", "per candidate, L (query cell, candidate cell) pairs")
    if r.pairs.numel() and (r.pairs[..., 0].min() < 0 or r.pairs[..., 0].max() >= hw_q or r.pairs[..., 1].min() < 0
                            or r.pairs[..., 1].max() >= hw_c):
        _fail(cls, f"{what}: a pair indexes a cell outside the grids ({hw_q} and {hw_c} cells)",
              "flatten cells row-major, h * W + w")
    if r.weights.shape != r.pairs.shape[:2]:
        _fail(cls, f"{what}: weights have shape {list(r.weights.shape)}, expected {list(r.pairs.shape[:2])}", "one weight per pair")
    _check_result_tensors(cls, r, device, what)


def check_reranker(cls: type[ReRanker], *, config: dict[str, Any] | None = None,
                   maps: tuple[torch.Tensor, torch.Tensor] | None = None, queries: int = 2) -> None:
    """Run a re-ranker class through the contract.

    Args:
        cls: the `ReRanker` subclass.
        config: its config fields (default: the defaults).
        maps: query `[C, H, W]` and candidates `[N, C, H, W]` (default: `random_maps()`).
        queries: how many queries to give ``rerank_many``, when the class defines it.
    """
    rr = _build(cls, ReRanker, config)
    q, c = maps if maps is not None else random_maps()
    n, hw = c.shape[0], q.shape[-2] * q.shape[-1]
    r = _deterministic(cls, lambda: rr.rerank(q, c), "rerank")
    _check_ranking(cls, r, n, hw, c.shape[-2] * c.shape[-1], q.device, "rerank")
    _typed_error(cls, lambda: rr.rerank(q[0], c), "a query of rank 2 (expected [C, H, W])")
    _typed_error(cls, lambda: rr.rerank(q, c[0]), "candidates of rank 3 (expected [N, C, H, W])")
    _typed_error(cls, lambda: rr.rerank(_nan(q), c), "a query holding NaN")
    many = rr.rerank_many if isinstance(rr, BatchedReRanker) else None
    if many is not None:
        qs = torch.stack([q] * queries)
        cs = torch.stack([c.roll(i, 0) for i in range(queries)])
        out = many(qs, cs)
        if not isinstance(out, list) or len(out) != queries:
            _fail(cls, f"rerank_many returned {type(out).__name__} of length {len(out) if hasattr(out, '__len__') else '?'}, "
                       f"expected a list of {queries} Rankings", "return one Ranking per query")
        for i, ri in enumerate(out):
            _check_ranking(cls, ri, n, hw, c.shape[-2] * c.shape[-1], q.device, f"rerank_many[{i}]")
            single = rr.rerank(qs[i], cs[i])
            if not torch.equal(ri.order, single.order) or not torch.allclose(ri.scores, single.scores, rtol=1e-4, atol=1e-5):
                _fail(cls, f"rerank_many[{i}] disagrees with rerank on the same query", "compute the same scores in both paths")


# -- matchers -----------------------------------------------------------------------------------

def check_matcher(cls: type[Matcher], *, config: dict[str, Any] | None = None,
                  maps: tuple[torch.Tensor, torch.Tensor] | None = None) -> None:
    """Run a matcher class through the contract: ``match(a [C, H, W], b [C, H', W'])`` -> `Matches`
    with cell indices inside both grids, finite scores, deterministic, typed errors."""
    m = _build(cls, Matcher, config)
    if maps is None:
        q, c = random_maps(candidates=1)
        maps = (q, c[0])
    a, b = maps
    out = _deterministic(cls, lambda: m.match(a, b), "match")
    if not isinstance(out, Matches):
        _fail(cls, f"match returned {type(out).__name__}, not Matches", "return xcorr_core.Matches(pairs, scores)")
    hw_a, hw_b = a.shape[-2] * a.shape[-1], b.shape[-2] * b.shape[-1]
    if out.pairs.numel() and (out.pairs.min() < 0 or out.pairs[:, 0].max() >= hw_a or out.pairs[:, 1].max() >= hw_b):
        _fail(cls, "a match indexes a cell outside the grids", "flatten cells row-major, h * W + w")
    _check_result_tensors(cls, out, a.device, "match")
    _typed_error(cls, lambda: m.match(a[0], b), "a map of rank 2 (expected [C, H, W])")
    _typed_error(cls, lambda: m.match(a, b[:-1]), "maps with different channel counts")
    _typed_error(cls, lambda: m.match(_nan(a), b), "a map holding NaN")


# -- explainers ---------------------------------------------------------------------------------

def _hooks(model: torch.nn.Module | None) -> int:
    if model is None:
        return 0
    return sum(len(mod._forward_hooks) + len(mod._forward_pre_hooks) + len(mod._backward_hooks)
               + len(getattr(mod, "_backward_pre_hooks", {})) for mod in model.modules())


def check_explainer(cls: type[Explainer], *, cases: Sequence[Case], config: dict[str, Any] | None = None,
                    model: torch.nn.Module | None = None) -> None:
    """Run an explainer class through the contract on ``cases`` (each with the fields the class
    ``requires``): an `Explanation` whose JSON round trip is lossless, deterministic, finite tensors
    on the case's device; a case missing a required field, or holding a NaN image when the class
    requires ``image``, is a typed error;
    ``model`` (the one the explainer hooks, if any) carries no hook after a call that raised."""
    ex = _build(cls, Explainer, config)
    if not cases:
        raise ConformanceError("check_explainer needs at least one Case")
    for i, case in enumerate(cases):
        missing = sorted(f for f in cls.requires if getattr(case, f, None) is None)
        if missing:
            raise ConformanceError(f"case {i} lacks {missing}, which {cls.__name__}.requires lists; give complete cases")
        out = _deterministic(cls, lambda: ex.explain(case), f"explain(case {i})")
        if not isinstance(out, Explanation):
            _fail(cls, f"explain returned {type(out).__name__}, not an Explanation", "return a subclass of xcorr_core.Explanation")
        device = case.image.device if case.image is not None else torch.device("cpu")
        _check_result_tensors(cls, out, device, f"explain(case {i})")
        back = type(out).from_json(out.to_json())
        if not _same(out, back):
            _fail(cls, f"explain(case {i}): the Explanation does not survive to_json/from_json",
                  "declare every field with a JSON-serialisable type (tensors as xcorr_core.Tensor)")
    case = cases[0]
    for field in sorted(cls.requires):
        _typed_error(cls, lambda: ex.explain(case.model_copy(update={field: None})), f"a case without {field!r} (in requires)")
    if "image" in cls.requires and case.image is not None and case.image.is_floating_point():
        before = _hooks(model)
        _typed_error(cls, lambda: ex.explain(case.model_copy(update={"image": _nan(case.image)})), "a case whose image holds NaN")
        if _hooks(model) != before:
            _fail(cls, "a hook stayed on the model after explain raised", "remove hooks in a finally block (or a context manager)")


# -- metrics ------------------------------------------------------------------------------------

def default_metric_data(n: int = 12, k: int = 5, classes: int = 4, seed: int = 0) -> dict[str, Any]:
    """Inputs of the pipeline vocabulary for ``n`` decisions: predictions, targets, confidences,
    neighbour_ids and neighbour_labels (long `[n, k]`)."""
    g = torch.Generator().manual_seed(seed)
    targets = torch.randint(classes, (n,), generator=g)
    predictions = torch.where(torch.rand(n, generator=g) < 0.7, targets, torch.randint(classes, (n,), generator=g))
    return {"predictions": predictions, "targets": targets, "confidences": torch.rand(n, generator=g),
            "neighbour_ids": torch.randint(100, (n, k), generator=g), "neighbour_labels": torch.randint(classes, (n, k), generator=g)}


def check_metric(cls: type[Metric], *, data: dict[str, Any] | None = None, config: dict[str, Any] | None = None) -> None:
    """Run a metric class through the contract: ``compute(**data)`` with the names in ``requires``
    gives a `MetricResult` with a finite value (``per_sample`` of one value per sample), the same
    value twice, and a typed error when one tensor input is a sample shorter than the others."""
    _check_compute(cls, Metric, data if data is not None else default_metric_data(), config)


def check_statistic(cls: type[Statistic], *, data: dict[str, Any], config: dict[str, Any] | None = None) -> None:
    """Run a study-level statistic through the same contract as a metric, on the study or model
    inputs ``data`` (a statistic has no default inputs)."""
    _check_compute(cls, Statistic, data, config)


def _check_compute(cls: type, kind: type, data: dict[str, Any], config: dict[str, Any] | None) -> None:
    m = _build(cls, kind, config)
    data = dict(data)
    missing = sorted(set(cls.requires) - set(data))
    if missing:
        raise ConformanceError(f"{cls.__name__} requires {missing}, which the check's data lacks; pass data={{...}}")
    inputs = {k: data[k] for k in cls.requires}
    out = _deterministic(cls, lambda: m.compute(**inputs), "compute")  # type: ignore[attr-defined]
    if not isinstance(out, MetricResult):
        _fail(cls, f"compute returned {type(out).__name__}, not a MetricResult", "return xcorr_core.MetricResult(name=..., value=...)")
    if out.value != out.value or out.value in (float("inf"), float("-inf")):
        _fail(cls, f"compute gave value {out.value} on well-formed input", "a value must be finite; raise an XcorrError when undefined")
    if out.per_sample is not None and out.n and out.per_sample.shape[0] != out.n:
        _fail(cls, f"per_sample has {out.per_sample.shape[0]} values but n = {out.n}", "one per-sample value per counted sample")
    cut = next((k for k in sorted(inputs) if isinstance(inputs[k], torch.Tensor) and inputs[k].ndim >= 1 and inputs[k].shape[0] > 1), None)
    if cut is not None and len([k for k in inputs if isinstance(inputs[k], torch.Tensor)]) > 1:
        short = dict(inputs, **{cut: inputs[cut][:-1]})
        _typed_error(cls, lambda: m.compute(**short), f"{cut!r} one sample shorter than the other inputs")  # type: ignore[attr-defined]
