"""Typed results shared by every component: `Ranking`, `Matches`, `Explanation`,
`MetricResult`, and the `TensorModel` base that makes tensors inside pydantic
models serialisable.

Tensors are stored as they are (any device, any dtype). In JSON a tensor is
`{"dtype": "float32", "shape": [...], "data": "<base64 of little-endian bytes>"}`,
so `Model.from_json(m.to_json())` is bit-exact.
"""
from __future__ import annotations

import base64
from typing import Annotated, Any, TypeVar

import numpy as np
import torch
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    SerializeAsAny,
    WithJsonSchema,
    model_validator,
)


__all__ = ["Tensor", "TensorModel", "Ranking", "Matches", "Explanation", "MetricResult", "MethodResult", "RunResult"]

_DTYPES: dict[str, torch.dtype] = {
    str(d).removeprefix("torch."): d
    for d in (
        torch.float16, torch.bfloat16, torch.float32, torch.float64,
        torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64, torch.bool,
    )
}
# numpy has no bfloat16: its bytes travel as int16.
_NP_VIEW = {torch.bfloat16: torch.int16}


def _tensor_from_any(value: Any) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, dict) and {"dtype", "shape", "data"} <= value.keys():
        dtype = _DTYPES.get(value["dtype"])
        if dtype is None:
            raise ValueError(f"unsupported tensor dtype {value['dtype']!r}")
        raw = base64.b64decode(value["data"])
        view = _NP_VIEW.get(dtype, dtype)
        arr = np.frombuffer(raw, dtype=torch.empty(0, dtype=view).numpy().dtype.newbyteorder("<"))
        t = torch.from_numpy(arr.astype(arr.dtype.newbyteorder("="), copy=True))
        return t.view(dtype).reshape(value["shape"]) if dtype in _NP_VIEW else t.reshape(value["shape"])
    if isinstance(value, np.ndarray):
        return torch.from_numpy(value)
    if isinstance(value, (list, tuple, int, float)):
        return torch.as_tensor(value)
    raise ValueError(f"expected a tensor, got {type(value).__name__}")


def _tensor_to_json(t: torch.Tensor) -> dict[str, Any]:
    t = t.detach().cpu().contiguous()
    view = _NP_VIEW.get(t.dtype)
    arr = (t.view(view) if view is not None else t).numpy()
    arr = arr.astype(arr.dtype.newbyteorder("<"), copy=False)
    return {
        "dtype": str(t.dtype).removeprefix("torch."),
        "shape": list(t.shape),
        "data": base64.b64encode(arr.tobytes()).decode("ascii"),
    }


Tensor = Annotated[
    torch.Tensor,
    PlainValidator(_tensor_from_any),
    PlainSerializer(_tensor_to_json, when_used="json"),
    WithJsonSchema(
        {
            "type": "object",
            "description": "tensor: dtype, shape and base64 little-endian data",
            "properties": {"dtype": {"type": "string"}, "shape": {"type": "array"}, "data": {"type": "string"}},
        }
    ),
]
"""A `torch.Tensor` field type for pydantic models (validated, JSON-serialisable)."""

M = TypeVar("M", bound="TensorModel")


def _move(value: Any, device: torch.device | str) -> Any:
    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, TensorModel):
        return value.to(device)
    if isinstance(value, list):
        return [_move(v, device) for v in value]
    if isinstance(value, tuple):
        return tuple(_move(v, device) for v in value)
    if isinstance(value, dict):
        return {k: _move(v, device) for k, v in value.items()}
    return value


class TensorModel(BaseModel):
    """Base of results that hold tensors: JSON round trip and device moves."""

    model_config = ConfigDict(arbitrary_types_allowed=True, validate_assignment=False)

    def to_json(self, **kwargs: Any) -> str:
        """Serialise losslessly (tensors as base64 bytes)."""
        return self.model_dump_json(**kwargs)

    @classmethod
    def from_json(cls: type[M], data: str | bytes) -> M:
        """Inverse of `to_json`."""
        return cls.model_validate_json(data)

    def to(self: M, device: torch.device | str) -> M:
        """A copy with every tensor (also in nested models, lists, dicts) on `device`."""
        updates = {name: _move(getattr(self, name), device) for name in type(self).model_fields}
        return self.model_copy(update=updates)


class Ranking(TensorModel):
    """A re-ranking of N candidates for one query.

    Attributes:
        order: long `[N]`, candidate positions best first.
        scores: `[N]`, aligned with the input candidates; higher = more similar.
        pairs: long `[N, L, 2]`, per candidate the L patch pairs behind its score
            (query patch, candidate patch), flattened row-major `h * W + w`.
        weights: `[N, L]`, the weight (flow, match score) of each pair.
    """

    order: Tensor
    scores: Tensor
    pairs: Tensor
    weights: Tensor

    @model_validator(mode="after")
    def _check(self) -> "Ranking":
        n = self.scores.shape[0] if self.scores.ndim == 1 else -1
        if self.scores.ndim != 1:
            raise ValueError(f"scores must be [N], got {list(self.scores.shape)}")
        if self.order.shape != (n,) or self.order.dtype != torch.int64:
            raise ValueError(f"order must be long [N={n}], got {self.order.dtype} {list(self.order.shape)}")
        if self.pairs.ndim != 3 or self.pairs.shape[0] != n or self.pairs.shape[2] != 2 or self.pairs.dtype != torch.int64:
            raise ValueError(f"pairs must be long [N={n}, L, 2], got {self.pairs.dtype} {list(self.pairs.shape)}")
        if self.weights.shape != self.pairs.shape[:2]:
            raise ValueError(f"weights must be [N, L]={list(self.pairs.shape[:2])}, got {list(self.weights.shape)}")
        return self


class Matches(TensorModel):
    """Correspondences between two feature maps a `[C, H, W]` and b `[C, H', W']`.

    Attributes:
        pairs: long `[M, 2]`, flattened cell indices (into a, into b).
        scores: `[M]`, one score per match (higher = stronger).
    """

    pairs: Tensor
    scores: Tensor

    @model_validator(mode="after")
    def _check(self) -> "Matches":
        if self.pairs.ndim != 2 or self.pairs.shape[1] != 2 or self.pairs.dtype != torch.int64:
            raise ValueError(f"pairs must be long [M, 2], got {self.pairs.dtype} {list(self.pairs.shape)}")
        if self.scores.shape != (self.pairs.shape[0],):
            raise ValueError(f"scores must be [M={self.pairs.shape[0]}], got {list(self.scores.shape)}")
        return self


class Explanation(TensorModel):
    """Base class of every explanation. Subclasses add their own tensor fields.

    Attributes:
        method: name of the explainer that produced it.
        query_id: id of the explained input, if it has one.
        prediction: the predicted class, if the model is a classifier.
        confidence: the model's confidence in `prediction`, in [0, 1].
        meta: free-form JSON-serialisable details.
    """

    method: str
    query_id: int | None = None
    prediction: int | None = None
    confidence: float | None = None
    meta: dict[str, Any] = Field(default_factory=dict)

    def plot(self, images: Any = None, ax: Any = None) -> Any:
        """Draw the explanation with matplotlib and return the figure.

        Subclasses override this; the base has nothing to draw.
        """
        raise NotImplementedError(f"{type(self).__name__} does not implement plot()")


class MetricResult(TensorModel):
    """The value of a metric over a data set.

    Attributes:
        name: metric name.
        value: the aggregate value.
        per_sample: optional `[n]` values, one per sample, whose aggregate is `value`.
        ci: optional confidence interval (low, high) at level `ci_level`.
        ci_level: confidence level of `ci`, e.g. 0.95.
        n: number of samples behind `value`.
        details: free-form JSON-serialisable extras.
    """

    name: str
    value: float
    per_sample: Tensor | None = None
    ci: tuple[float, float] | None = None
    ci_level: float | None = None
    n: int = 0
    details: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check(self) -> "MetricResult":
        if self.ci is not None:
            if self.ci_level is None or not 0.0 < self.ci_level < 1.0:
                raise ValueError("ci_level in (0, 1) is required with ci")
            if self.ci[0] > self.ci[1]:
                raise ValueError(f"ci low {self.ci[0]} > high {self.ci[1]}")
        if self.per_sample is not None and self.per_sample.ndim != 1:
            raise ValueError(f"per_sample must be [n], got {list(self.per_sample.shape)}")
        return self


class MethodResult(TensorModel):
    """Outcome of one classifier (kNN or kNN + a re-ranker) on one data set.

    Attributes:
        method: ``"knn"`` or the re-ranker's name.
        predictions, targets: long `[Q]`; confidences `[Q]` (votes / k).
        neighbour_ids: long `[Q, k]` gallery ids that voted, best first.
        neighbour_labels: long `[Q, k]` their labels.
        metrics: metric name -> result.
        explanations: explanations of the selected queries.
        seconds: wall time of this method's decisions (excluding feature extraction).
    """

    method: str
    predictions: Tensor
    targets: Tensor
    confidences: Tensor
    neighbour_ids: Tensor
    neighbour_labels: Tensor
    metrics: dict[str, MetricResult] = Field(default_factory=dict)
    explanations: list[SerializeAsAny[Explanation]] = Field(default_factory=list)
    seconds: float = 0.0


class RunResult(TensorModel):
    """All methods on one data set."""

    dataset: str
    n: int
    methods: dict[str, MethodResult]

    def summary(self) -> dict[str, dict[str, float]]:
        """method -> metric name -> value."""
        return {m: {k: r.value for k, r in res.metrics.items()} for m, res in self.methods.items()}
