"""Building a pipeline's components from its spec: each named component created from the registry
with its config, re-rankers added by ``all_rerankers``, and every explainer and metric checked for
what it needs before anything runs. Depends on pydantic and the core's components, errors,
registry, spec and vocabulary modules.
"""
from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from . import registry
from .components import Case
from .errors import ConfigError
from .spec import ComponentSpec, PipelineSpec, _unique_keys
from .vocabulary import check_metric_inputs

__all__ = ["Built", "build_components"]


class Built(BaseModel):
    """A spec's components, built: (key, re-ranker), explainers with their keys, (key, metric) and the
    explainer each metric reads."""

    model_config = {"arbitrary_types_allowed": True}
    rerankers: list[tuple[str, Any]]
    explainers: list[Any]
    metrics: list[tuple[str, Any]]
    explainer_keys: list[str] = []
    metric_explainer: dict[str, str | None] = {}  # metric key -> the explainer key whose outputs it reads


def build_components(spec: PipelineSpec) -> Built:
    """The components a spec names, created and checked against each other: re-rankers (with
    ``all_rerankers``), explainers and what they need from a `Case`, metrics and what they read
    (`xcorr_core.vocabulary`). Raises `ConfigError` saying where in the spec the problem is."""
    rr_specs = list(spec.rerankers)
    if spec.all_rerankers:
        named = {r.name for r in rr_specs}
        rr_specs += [ComponentSpec(name=c.name) for c in registry.components("reranker")
                     if c.name not in named and getattr(registry.get_class("reranker", c.name), "auto", True)]

    def make(kind: str, where: str, cs: ComponentSpec) -> Any:
        try:
            return registry.create(kind, cs.name, **cs.config)
        except ConfigError as exc:
            raise ConfigError(f"{where}.config: {exc}", field=f"{where}.config.{exc.field}") from exc
        except LookupError as exc:
            raise ConfigError(f"{where}.name: {exc}", field=f"{where}.name") from exc

    _unique_keys("rerankers", rr_specs, reserved={"knn"})
    _unique_keys("metrics", list(spec.metrics))
    rerankers = [(cs.key, make("reranker", f"rerankers[{i}]", cs)) for i, cs in enumerate(rr_specs)]
    if rerankers and not spec.features.spatial_layer:
        raise ConfigError("rerankers need spatial maps but features.spatial_layer is null", field="features.spatial_layer")
    if rerankers and spec.decision.k > spec.shortlist:
        raise ConfigError(f"decision.k={spec.decision.k} exceeds shortlist={spec.shortlist}", field="decision.k")
    available = set(Case.model_fields) - ({"ranking", "shortlist_ids"} if not rerankers else set())

    def checked(kind: str, where: str, cs: ComponentSpec, provided: set[str] | frozenset[str]) -> Any:
        comp = make(kind, where, cs)
        missing = set(getattr(comp, "requires", ())) - set(provided)
        if missing:
            raise ConfigError(f"{where} ({cs.name}) needs {sorted(missing)}; this pipeline provides {sorted(provided)}", field=where)
        return comp

    explainers = [checked("explainer", f"explainers[{i}]", cs, available) for i, cs in enumerate(spec.explainers)]
    explainer_keys = [cs.key for cs in spec.explainers]
    metrics, wiring = [], {}
    metric_names = {c.name for c in registry.components("metric")}
    statistic_names = {c.name for c in registry.components("statistic")} - metric_names
    for i, cs in enumerate(spec.metrics):
        where, source = f"metrics[{i}]", cs.config.get("explainer")
        if source is not None and not isinstance(source, str):
            raise ConfigError(f"{where}.config.explainer: the key of an explainer, got {source!r}", field=f"{where}.config.explainer")
        if cs.name in statistic_names:
            owner = registry.get_class("statistic", cs.name).__module__.split(".")[0]
            raise ConfigError(f"{where}.name: {cs.name!r} is a study-level statistic (one value over a whole study or model), not a "
                              f"per-query metric, so a pipeline cannot compute it; call xcorr_core.create('statistic', {cs.name!r}, ...)"
                              f".compute(...) with its inputs (see {owner})", field=f"{where}.name")
        m = make("metric", where, cs.model_copy(update={"config": {k: v for k, v in cs.config.items() if k != "explainer"}}))
        check_metric_inputs(where, cs.name, frozenset(getattr(m, "requires", ())), source, explainer_keys)
        metrics.append((cs.key, m))
        wiring[cs.key] = source
    return Built(rerankers=rerankers, explainers=explainers, metrics=metrics, explainer_keys=explainer_keys,
                 metric_explainer=wiring)
