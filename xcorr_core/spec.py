"""The pipeline spec: typed, strict, loadable from YAML/JSON (`PipelineSpec.from_file`), with errors
that name the location in the spec. No tensors, no running: `xcorr_core.pipeline` runs a spec.
Depends on pydantic, yaml and the core's components/errors modules.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import ConfigDict, Field, StrictBool, StrictInt, ValidationError

from .components import StrictConfig
from .errors import ConfigError
from .layouts import Layout
from .vocabulary import VOCABULARY

__all__ = ["PipelineSpec", "ComponentSpec", "FeatureSpec", "IndexSpec", "DecisionSpec", "ExplainSelection", "METRIC_INPUTS"]

#: every name a pipeline can hand a metric (descriptions: `xcorr_core.vocabulary.VOCABULARY`)
METRIC_INPUTS = frozenset(VOCABULARY)


class ComponentSpec(StrictConfig):
    """A component by registered name, with its config.

    ``as`` names its results (default: ``name``); it is how one component runs twice with two
    configs (``{name: emd_corr, as: emd_exact, config: {...}}``): two entries with the same key
    are rejected rather than letting the last one silently win."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, populate_by_name=True)
    name: str
    config: dict[str, Any] = Field(default_factory=dict)
    as_: str | None = Field(None, alias="as", min_length=1, description="key of this component's results (default: name)")

    @property
    def key(self) -> str:
        """The name its results go under."""
        return self.as_ or self.name


class FeatureSpec(StrictConfig):
    """Which model and layers produce the features."""

    model: str = Field("birds", description="a shipped model name ('birds', 'herd'), a model a plugin names (register_models), "
                                            "a checkpoint path, or timm:NAME / torchvision:NAME / hf:PATH / open_clip:NAME; "
                                            "ignored when a model is passed to Pipeline()")
    weights: str | None = Field(None, description="a local weights file for a timm: / torchvision: / hf: / open_clip: model")
    model_kwargs: dict[str, Any] = Field(default_factory=dict, description="constructor arguments of a named model "
                                                                            "(e.g. {num_classes: 0, img_size: 112} for timm)")
    pooled_layer: str = Field("layer4", description="layer whose pooled vector is searched")
    spatial_layer: str | None = Field("layer4", description="layer whose spatial maps re-rankers compare (None: no re-ranking)")
    layout: Layout = Field(default_factory=Layout, description="how the layers' outputs are read (kind auto: detected from the "
                                                               "model; or channels_first / channels_last / tokens with "
                                                               "prefix_tokens and grid)")
    pooling: Literal["auto", "mean", "cls", "output"] = Field(
        "auto", description="the searched vector: mean over cells, the CLS token, or the model's own output (embedding "
                            "models); auto: mean for maps, the model's own choice or CLS for tokens")
    batch_size: StrictInt = Field(64, ge=1)


class IndexSpec(StrictConfig):
    """The gallery's nearest-neighbour index (faiss). ``flat`` is exact; the others trade recall for
    speed and memory (`xcorr index eval` measures the recall against exact search)."""

    metric: Literal["cosine", "ip", "l2"] = "cosine"
    kind: Literal["flat", "hnsw", "ivf_flat", "ivf_pq"] = "flat"
    hnsw_m: StrictInt = Field(32, ge=2, description="HNSW graph degree")
    ef_search: StrictInt = Field(128, ge=1, description="HNSW search breadth")
    nlist: StrictInt = Field(1024, ge=1, description="IVF lists (lowered to sample/39 for small galleries)")
    nprobe: StrictInt = Field(32, ge=1, description="IVF lists searched per query")
    pq_m: StrictInt = Field(64, ge=1, description="IVF-PQ bytes per vector (must divide the feature dimension)")
    train_size: StrictInt = Field(100_000, ge=39, description="IVF k-means training sample (rows drawn with the spec's seed)")
    refine: StrictInt = Field(1, ge=1, description="approximate kinds: re-score the top k * refine exactly from the full vectors (1: off)")
    ef_construction: StrictInt = Field(40, ge=1, description="HNSW build breadth")

    def params(self) -> dict[str, int]:
        """Keyword arguments of `GalleryIndex` for this kind."""
        return {"hnsw_m": self.hnsw_m, "ef_search": self.ef_search, "nlist": self.nlist, "nprobe": self.nprobe, "pq_m": self.pq_m,
                "refine": self.refine, "ef_construction": self.ef_construction}


class MapStoreSpec(StrictConfig):
    """How the gallery's spatial maps are stored for the re-rankers (`SpatialStore`)."""

    layout: Literal["auto", "maps", "cells"] = Field(
        "auto", description="'cells': unit cells x channels prepared once (what patch-matching re-rankers read); 'maps': as "
                            "extracted; 'auto': cells when every re-ranker reads cells (rerank_cells_many), else maps")
    dtype: Literal["float16", "float32"] = Field("float16", description="storage of maps / unit cells (float16: half the bytes)")


class DecisionSpec(StrictConfig):
    """Majority vote over the top k (k = 20 in the EMD/CHM-Corr paper)."""

    rule: Literal["majority"] = "majority"
    k: StrictInt = Field(20, ge=1)
    tie_break: Literal["lowest_label", "nearest"] = "lowest_label"


class ExplainSelection(StrictConfig):
    """Which queries get explanations: the first ``correct`` right and ``wrong`` wrong ones per method."""

    correct: StrictInt = Field(1, ge=0)
    wrong: StrictInt = Field(1, ge=0)
    distractors: StrictInt = Field(20, ge=1, description="gallery images of the distractor class handed to counterfactual "
                                                         "explainers (the SCC paper's up to 20): the nearest gallery class other "
                                                         "than the prediction, its images nearest to the query first")


class PipelineSpec(StrictConfig):
    """The whole pipeline. Defaults reproduce the paper's kNN (k = 20) with an N = 50 shortlist."""

    features: FeatureSpec = Field(default_factory=FeatureSpec)
    index: IndexSpec = Field(default_factory=IndexSpec)
    shortlist: StrictInt = Field(50, ge=1, description="candidates re-rankers see (N)")
    maps: MapStoreSpec = Field(default_factory=MapStoreSpec)
    rerankers: list[ComponentSpec] = Field(default_factory=list)
    all_rerankers: StrictBool = Field(False, description="also run every installed re-ranker with its default config "
                                                    "(except those whose class sets auto = False)")
    decision: DecisionSpec = Field(default_factory=DecisionSpec)
    explainers: list[ComponentSpec] = Field(default_factory=lambda: [ComponentSpec(name="nearest_neighbours")])
    metrics: list[ComponentSpec] = Field(default_factory=lambda: [ComponentSpec(name="top1_accuracy"), ComponentSpec(name="mean_confidence")])
    explain: ExplainSelection = Field(default_factory=ExplainSelection)
    seed: StrictInt = 0

    @classmethod
    def from_file(cls, path: str | Path) -> "PipelineSpec":
        """Load a spec from ``.yaml``/``.yml`` or ``.json``; errors name the file and field."""
        path = Path(path)
        return cls.parse(cls.read_mapping(path), source=str(path))

    @staticmethod
    def read_mapping(path: Path) -> dict[str, Any]:
        """The mapping a YAML/JSON spec file holds (strict: UTF-8, no duplicate keys, not empty)."""
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise ConfigError(f"cannot read pipeline spec {path}: {exc}") from exc
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{path} is not UTF-8 text (byte {exc.start}): save the spec as UTF-8") from exc
        try:
            data = json.loads(text, object_pairs_hook=_no_duplicate_pairs) if path.suffix == ".json" else yaml.load(text, Loader=_StrictLoader)
        except (ValueError, yaml.YAMLError) as exc:
            raise ConfigError(f"{path} is not valid {'JSON' if path.suffix == '.json' else 'YAML'}: {exc}") from exc
        if data is None:
            raise ConfigError(f"{path} is empty: write at least one key (an empty mapping, {{}}, runs the defaults)")
        if not isinstance(data, dict):
            raise ConfigError(f"{path} must hold a mapping of spec keys, got {type(data).__name__}")
        return data

    @classmethod
    def parse(cls, data: Any, source: str = "spec") -> "PipelineSpec":
        """Validate a dict; `ConfigError` names the offending location, e.g. ``rerankers[0].name``."""
        try:
            return cls.model_validate(data or {})
        except ValidationError as exc:
            err = exc.errors()[0]
            loc = _loc(err["loc"])
            raise ConfigError(f"{source}: {loc}: {err['msg']}", field=loc) from exc


def _no_duplicate_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise ValueError(f"duplicate key {k!r}")
        out[k] = v
    return out


class _StrictLoader(yaml.SafeLoader):
    """YAML's safe loader, except that a key given twice in one mapping is an error (not "last wins")."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _loc(parts: tuple[Any, ...] | list[Any]) -> str:
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "(root)"


def _unique_keys(where: str, specs: list[ComponentSpec], reserved: set[str] = frozenset()) -> None:  # type: ignore[assignment]
    seen: dict[str, int] = {}
    for i, cs in enumerate(specs):
        if cs.key in reserved:
            raise ConfigError(f"{where}[{i}]: {cs.key!r} is reserved; give this entry another `as:` name", field=f"{where}[{i}]")
        if cs.key in seen:
            raise ConfigError(f"{where}[{i}]: {cs.key!r} is also {where}[{seen[cs.key]}]; results are keyed by name, so give "
                              "one of them its own `as:` name", field=f"{where}[{i}]")
        seen[cs.key] = i
