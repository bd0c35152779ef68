"""`JobSpec`: a pipeline plus what it runs over — the query data, the gallery (a source to build
from, or a folder built by ``xcorr index build``) and how results are stored. Loaded from YAML/JSON
like a `PipelineSpec`; a plain pipeline spec file is a job whose data come from the command line.
No running here: `xcorr_core.jobs.runner` runs a job.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, StrictInt, field_validator, model_validator

from .. import __version__
from ..components import StrictConfig
from ..errors import ConfigError
from ..sources import DataSource
from ..spec import PipelineSpec

__all__ = ["JobSpec", "StoreSpec"]


class StoreSpec(StrictConfig):
    """How a job's gallery keeps its spatial maps (a sharded, memory-mapped store)."""

    dtype: Literal["float16", "float32"] | None = Field(
        None, description="the same setting as the pipeline's maps.dtype (float16 halves the bytes; scores change by ~1e-3 "
                          "relative); None: the pipeline's. Given both, they must agree")
    shard_rows: StrictInt = Field(4096, ge=1, description="maps per shard file")
    verify: Literal["rows", "full", "none"] = Field("rows", description="rows: CRC-32 of every map read; full: also every shard at open")


class JobSpec(StrictConfig):
    """A whole job.

    Attributes:
        pipeline: the pipeline (what `xcorr_core.spec.PipelineSpec` describes).
        data: the queries (a `DataSource` or its short form, e.g. ``synthbirds:test``).
        gallery: the gallery to build, or None when ``gallery_dir`` names a built one.
        gallery_dir: a gallery folder written by ``xcorr index build`` (default: ``OUT/gallery``, built by the job).
        batch_size: queries per batch (a batch is the unit of work, retry and output part).
        explain: ``all`` writes every query's explanations (one JSON file per query and method), ``none`` skips them.
        store: the gallery's spatial store.
        num_gpus: GPUs per Ray worker (0: CPU); used only when CUDA is there.
    """

    pipeline: PipelineSpec = Field(default_factory=PipelineSpec)
    data: DataSource | None = None
    gallery: DataSource | None = None
    gallery_dir: str | None = None
    batch_size: StrictInt = Field(32, ge=1)
    explain: Literal["all", "none"] = "all"
    store: StoreSpec = Field(default_factory=StoreSpec)
    num_gpus: float = Field(0.0, ge=0)

    @model_validator(mode="after")
    def _one_store_dtype(self) -> "JobSpec":
        """``store.dtype`` and ``pipeline.maps.dtype`` are one setting: the job's store follows the pipeline's."""
        maps = self.pipeline.maps
        if self.store.dtype is not None:
            if "dtype" in maps.model_fields_set and maps.dtype != self.store.dtype:
                raise ConfigError(f"store.dtype {self.store.dtype} contradicts pipeline.maps.dtype {maps.dtype}: they are one "
                                  "setting; give one of them", field="store.dtype")
            maps.dtype = self.store.dtype
        return self

    @property
    def store_dtype(self) -> str:
        """The dtype of the gallery's stored maps (``pipeline.maps.dtype``, or ``store.dtype`` when given)."""
        return self.pipeline.maps.dtype

    @field_validator("data", "gallery", mode="before")
    @classmethod
    def _source(cls, v: Any) -> Any:
        return v if v is None else DataSource.parse(v)

    @classmethod
    def from_file(cls, path: str | Path) -> "JobSpec":
        """A job file (keys ``pipeline``, ``data``, ``gallery``, ...) or a plain pipeline spec file."""
        path = Path(path)
        raw = PipelineSpec.read_mapping(path)
        if "pipeline" not in raw and not (set(raw) & set(cls.model_fields) - {"pipeline"}):
            return cls(pipeline=PipelineSpec.parse(raw, source=str(path)))
        pipe = raw.get("pipeline", {})
        if isinstance(pipe, str):  # a path to a pipeline spec, relative to the job file
            pipe_path = (path.parent / pipe) if not Path(pipe).is_absolute() else Path(pipe)
            raw = {**raw, "pipeline": PipelineSpec.from_file(pipe_path)}
        else:
            raw = {**raw, "pipeline": PipelineSpec.parse(pipe, source=f"{path}: pipeline")}
        return cls.parse(raw, source=str(path))

    @classmethod
    def parse(cls, data: Any, source: str = "job") -> "JobSpec":
        from pydantic import ValidationError

        from ..spec import _loc

        try:
            return cls.model_validate(data or {})
        except ValidationError as exc:
            err = exc.errors()[0]
            loc = _loc(err["loc"])
            raise ConfigError(f"{source}: {loc}: {err['msg']}", field=loc) from exc
        except ConfigError as exc:
            raise ConfigError(f"{source}: {exc}", field=exc.field) from exc

    def gallery_fingerprint(self) -> str:
        """What a built gallery depends on: model and layers, index, store format, gallery source, seed."""
        f = self.pipeline.features
        return _digest({"features": {k: v for k, v in f.model_dump().items() if k != "batch_size"},
                        "index": self.pipeline.index.model_dump(), "store": {"dtype": self.store_dtype},
                        "gallery": self.gallery.model_dump() if self.gallery else None, "seed": self.pipeline.seed,
                        "needs_maps": bool(self.pipeline.rerankers or self.pipeline.all_rerankers)})

    def fingerprint(self) -> str:
        """What a job's table depends on (not how it is run: executor, workers, batch size)."""
        return _digest({"pipeline": self.pipeline.model_dump(mode="json", by_alias=True), "data": self.data.model_dump() if self.data else None,
                        "gallery": self.gallery.model_dump() if self.gallery else None, "gallery_dir": self.gallery_dir,
                        "explain": self.explain, "store": {"dtype": self.store_dtype}, "xcorr": __version__})


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]
