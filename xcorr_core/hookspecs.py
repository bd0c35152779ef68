"""The hooks a plugin may implement. Each is documented as the function a plugin writes.

A plugin is a plain module (or object) named by an entry point in the group
``xcorr``. It implements any of these functions, marked with
``@xcorr_core.hookimpl``, and calls ``register(SomeComponent)`` once per
component class it provides::

    import xcorr_core

    @xcorr_core.hookimpl
    def register_rerankers(register):
        register(MyReRanker)

Only depends on pluggy.
"""
from __future__ import annotations

from typing import Any, Callable

import pluggy

PROJECT = "xcorr"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

Register = Callable[[type], None]


@hookspec
def register_explainers(register: Register) -> None:
    """Register Explainer classes: ``register(cls)`` for each.

    An Explainer has class attributes ``name``, ``summary``, ``requires``
    (the `Case` fields it reads), a nested pydantic ``Config``, and
    ``explain(case) -> Explanation``.
    """


@hookspec
def register_matchers(register: Register) -> None:
    """Register Matcher classes: ``register(cls)`` for each.

    A Matcher has ``name``, ``summary``, ``Config`` and
    ``match(a [C, H, W], b [C, H', W']) -> Matches``.
    """


@hookspec
def register_rerankers(register: Register) -> None:
    """Register ReRanker classes: ``register(cls)`` for each.

    A ReRanker has ``name``, ``summary``, ``Config`` and
    ``rerank(query [C, H, W], candidates [N, C, H, W]) -> Ranking``.
    """


@hookspec
def register_metrics(register: Register) -> None:
    """Register Metric classes: ``register(cls)`` for each.

    A Metric has ``name``, ``summary``, ``requires`` (the names of the
    keyword arguments it needs), ``Config`` and ``compute(**data) -> MetricResult``.
    """


@hookspec
def register_statistics(register: Register) -> None:
    """Register Statistic classes: ``register(cls)`` for each.

    A Statistic is computed once over a whole study, model or design (team accuracy, a study's
    power, a prototype set's variance), never per query: ``name``, ``summary``, ``requires``,
    ``Config`` and ``compute(**data) -> MetricResult``, like a Metric, but a pipeline spec
    refuses it.
    """


@hookspec
def register_models(register: Any) -> None:
    """Name models that a pipeline spec can use as ``features.model``: call
    ``register(name, load, summary)`` for each, where ``load() -> nn.Module`` returns the model
    in eval mode without any network access (e.g. weights shipped with the plugin).
    """


@hookspec
def register_commands(subparsers: Any) -> None:
    """Add sub-commands to the ``xcorr`` CLI.

    ``subparsers`` is the `argparse` sub-parser action of the ``xcorr`` parser.
    Add a parser with ``subparsers.add_parser(name, help=...)`` and set its
    handler with ``parser.set_defaults(handler=func)``; ``func(args) -> int``
    is called with the parsed arguments and returns the exit code.
    """


@hookspec
def register_demo_sections(register: Register) -> None:
    """Add sections to ``xcorr demo``: ``register(title, run)`` for each.

    ``run(ctx) -> DemoSection`` receives a `xcorr_core.demo.DemoContext` (output
    folder, shipped models, SynthBirds / SynthHerd splits, the kNN pipeline
    results, and ``ctx.birds_maps(data)``: the shipped classifier's layer4 maps of a
    SynthBirds set, computed once per demo for every section that needs them) and
    returns a `xcorr_core.demo.DemoSection` (JSON-able report,
    PNG figures written under ``ctx.out``, an HTML fragment). A section that
    raises is reported in the demo's output; the other sections still run.
    """
