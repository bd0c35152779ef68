"""Base classes for the four component kinds, and the `Case` an Explainer reads.

Subclassing is optional (the registry checks by duck typing) but gives a
ready `__init__`, a strict default `Config` and documented signatures.
Only depends on pydantic, torch and `xcorr_core.results`.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol, runtime_checkable

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .errors import ConfigError
from .results import Explanation, Matches, MetricResult, Ranking, Tensor, TensorModel

if TYPE_CHECKING:
    from .cells import CellMaps

__all__ = ["Kind", "KINDS", "Component", "Explainer", "Matcher", "ReRanker", "Metric", "Statistic", "Case", "StrictConfig",
           "BatchedReRanker", "CellReRanker", "MethodScopedExplainer"]

Kind = Literal["explainer", "matcher", "reranker", "metric", "statistic"]
KINDS: tuple[Kind, ...] = ("explainer", "matcher", "reranker", "metric", "statistic")

#: method each kind must implement
KIND_METHOD: dict[str, str] = {
    "explainer": "explain",
    "matcher": "match",
    "reranker": "rerank",
    "metric": "compute",
    "statistic": "compute",
}


class _ConfigMeta(type(BaseModel)):  # type: ignore[misc]
    """Calling a config class with a bad field raises `ConfigError`. Only the call is wrapped: pydantic
    validates nested configs without it, so their errors keep their full location."""

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().__call__(*args, **kwargs)
        except ValidationError as exc:
            raise _config_error(cls, exc) from exc


def _config_error(cls: type, exc: ValidationError) -> ConfigError:
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err["loc"]) or "(config)"
    return ConfigError(f"{cls.__qualname__}: invalid field {loc!r}: {err['msg']}", field=loc)


class StrictConfig(BaseModel, metaclass=_ConfigMeta):
    """Config base: unknown fields are errors, assignments are validated, and constructing one with
    a bad field, or assigning a bad value to one, is a `ConfigError` naming the class and the field
    (not pydantic's ValidationError)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    def __setattr__(self, name: str, value: Any) -> None:
        try:
            super().__setattr__(name, value)
        except ValidationError as exc:
            raise _config_error(type(self), exc) from exc


class Component:
    """Common base: ``Component(config)`` stores a validated ``self.config``."""

    name: ClassVar[str]
    summary: ClassVar[str]

    class Config(StrictConfig):
        pass

    def __init__(self, config: BaseModel | None = None) -> None:
        self.config = config if config is not None else self.Config()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config!r})"


class Matcher(Component):
    """Finds correspondences between two feature maps."""

    def match(self, a: torch.Tensor, b: torch.Tensor) -> Matches:
        """Match cells of ``a`` `[C, H, W]` to cells of ``b`` `[C, H', W']`."""
        raise NotImplementedError


class ReRanker(Component):
    """Re-orders a shortlist of candidates by comparing spatial feature maps."""

    #: False: ``all_rerankers`` in a pipeline spec skips this re-ranker (it needs inputs a
    #: pipeline cannot supply, e.g. CHM-Corr+'s query keypoints, or it costs far more than a
    #: feature comparison, e.g. a network per candidate); naming it in ``rerankers`` still runs it
    auto: ClassVar[bool] = True

    def rerank(self, query: torch.Tensor, candidates: torch.Tensor) -> Ranking:
        """Score ``candidates`` `[N, C, H, W]` against ``query`` `[C, H, W]`."""
        raise NotImplementedError

    # Optional methods, declared as the protocols below: ``rerank_many`` (`BatchedReRanker`) and
    # ``rerank_cells_many`` (`CellReRanker`). A pipeline calls them when a re-ranker has them.


@runtime_checkable
class BatchedReRanker(Protocol):
    """A re-ranker that scores many queries at once; pipelines then call this instead of ``rerank``."""

    def rerank_many(self, queries: torch.Tensor, candidates: torch.Tensor) -> list[Ranking]:
        """``queries`` `[Q, C, H, W]`, ``candidates`` `[Q, N, C, H, W]` -> one `Ranking` per query."""
        ...


@runtime_checkable
class CellReRanker(Protocol):
    """A re-ranker that compares cells; a pipeline whose re-rankers all are stores the gallery as
    unit cells (`CellMaps`) and calls this."""

    def rerank_cells_many(self, queries: torch.Tensor, cells: "CellMaps") -> list[Ranking]:
        """``queries`` `[Q, C, H, W]`, ``cells`` of `[Q, N]` candidates -> one `Ranking` per query."""
        ...


class Case(TensorModel):
    """Everything a pipeline knows about one decision, for an Explainer to read.

    Fields are optional; an Explainer lists the ones it needs in ``requires``
    and the pipeline checks that it can supply them before running.

    Attributes:
        query_id: position of the query in its data set.
        image: the query image `[3, H, W]`.
        target: the true label, when known.
        prediction: the predicted label.
        confidence: votes / k for nearest-neighbour rules.
        neighbour_ids: gallery ids of the top-k neighbours `[k]`, best first.
        neighbour_labels: their labels `[k]`.
        neighbour_scores: their similarity scores `[k]`.
        ranking: the re-ranker's output over the shortlist, if any.
        shortlist_ids: gallery ids of the shortlist `[N]` the ranking refers to.
        method: the classifier that decided ("knn" or a re-ranker name).
        grid: `(H, W)` of the spatial maps that ranking pairs index.
        model: the pipeline's model (`nn.Module`), for explainers of the classifier itself
            (Grad-CAM, counterfactuals); never serialised.
        distractors: `[n, 3, H, W]` gallery images of the distractor class, nearest to the query
            first (counterfactual explainers); distractor_ids: their gallery ids `[n]`;
            distractor_class: their class, the nearest gallery class other than the prediction.
        pair_image: `[3, H, W]` the gallery image a pairwise explainer (PAIR-X) explains the query
            against: the best-ranked of the neighbours of the predicted class (else the first
            neighbour); pair_id: its gallery id. Filled when an explainer requires it.
    """

    query_id: int | None = None
    image: Tensor | None = None
    target: int | None = None
    prediction: int | None = None
    confidence: float | None = None
    neighbour_ids: Tensor | None = None
    neighbour_labels: Tensor | None = None
    neighbour_scores: Tensor | None = None
    ranking: Ranking | None = None
    shortlist_ids: Tensor | None = None
    method: str | None = None
    grid: tuple[int, int] | None = None
    model: Any = Field(None, exclude=True, repr=False)
    distractors: Tensor | None = None
    distractor_ids: Tensor | None = None
    distractor_class: int | None = None
    pair_image: Tensor | None = None
    pair_id: int | None = None


class Explainer(Component):
    """Turns a decision (a `Case`) into an `Explanation`."""

    requires: ClassVar[frozenset[str]] = frozenset()

    def explain(self, case: Case) -> Explanation:
        """Explain one decision."""
        raise NotImplementedError


@runtime_checkable
class MethodScopedExplainer(Protocol):
    """An explainer of some classifiers' decisions only (e.g. EMD-Corr's, of the ``emd_corr`` re-ranker)."""

    methods: frozenset[str]

    def explain(self, case: Case) -> Explanation: ...


class Metric(Component):
    """Aggregates per-sample outcomes into a `MetricResult`.

    The pipeline calls ``compute`` with keyword arguments named in ``requires``, from its
    vocabulary (`xcorr_core.vocabulary.VOCABULARY`): the decisions (``predictions``, ``targets``
    long `[n]`, ``confidences`` `[n]`, ``neighbour_ids`` / ``neighbour_labels`` long `[n, k]`,
    ``model``), the explained queries (``explanations``, ``query_ids``, ``images``, a named
    explainer's ``maps``) and the data sets' annotations (``boxes``, ``keypoints``, ...).
    """

    requires: ClassVar[frozenset[str]] = frozenset({"predictions", "targets"})

    def compute(self, **data: Any) -> MetricResult:
        raise NotImplementedError


class Statistic(Component):
    """One value over a whole study, model or design: a human-AI team's accuracy, a planned
    study's power, a prototype set's spread. Not a per-query `Metric`: a pipeline spec refuses
    it. Its caller passes the inputs named in ``requires`` (study tables, a model's prototypes)
    to ``compute``, which returns a `MetricResult` (value, interval, details)."""

    requires: ClassVar[frozenset[str]] = frozenset()

    def compute(self, **data: Any) -> MetricResult:
        raise NotImplementedError


class ComponentInfo(BaseModel):
    """What `xcorr_core.components()` reports about one registered component."""

    kind: Kind
    name: str
    plugin: str
    version: str
    summary: str
    config_schema: dict[str, Any] = Field(default_factory=dict)


class PluginInfo(BaseModel):
    """A plugin as `xcorr plugins` shows it: what loaded, or why it failed."""

    name: str
    version: str
    components: list[ComponentInfo] = Field(default_factory=list)
    error: str | None = None
