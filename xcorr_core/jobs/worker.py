"""What one worker does with one batch of ids — the same objects in the local executor and in a
Ray actor. Each worker loads the model, the data source, and (for queries) the gallery index and
store once, in its constructor; ``__call__`` maps a batch ``{"id": int64 array}`` to a pyarrow Table.

`FeatureWorker` extracts gallery features (pooled vectors and spatial maps, as raw bytes).
`QueryWorker` runs kNN -> re-rank -> explain -> metrics for its queries. A batch that raises is
tried once more; if it fails again each query runs alone and the ones that still fail become error
rows (``_error`` set) instead of failing the job. Depends on torch, pyarrow and the core.
"""
from __future__ import annotations

import os
import traceback
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..sources import DataSource, item_path, load_source
from .table import dump_explanations, require_pyarrow, result_schema

__all__ = ["FeatureWorker", "QueryWorker", "set_threads"]


def set_threads(num_cpus: float | None) -> None:
    """Give torch the worker's CPU share (Ray sets OMP_NUM_THREADS; torch reads it only at import)."""
    if num_cpus:
        torch.set_num_threads(max(1, int(num_cpus)))


def _device(num_gpus: float) -> torch.device:
    return torch.device("cuda") if num_gpus > 0 and torch.cuda.is_available() else torch.device("cpu")


def _inject_faults(ids: list[int]) -> None:
    """Fault injection for the fault-tolerance tests: ``XCORR_JOB_FAIL_ONCE`` / ``XCORR_JOB_DIE_ONCE``
    name a marker file holding a query id; the batch starting at that id raises / kills its worker
    process once (the marker is removed first). Unset, this does nothing."""
    for var in ("XCORR_JOB_FAIL_ONCE", "XCORR_JOB_DIE_ONCE"):
        marker = os.environ.get(var)
        if not marker or not os.path.exists(marker):
            continue
        try:
            target = int(Path(marker).read_text())
            if ids[0] != target:
                continue
            os.unlink(marker)
        except (OSError, ValueError):
            continue  # another worker took it
        if var == "XCORR_JOB_DIE_ONCE":
            os._exit(1)
        raise RuntimeError(f"injected fault ({var})")


class _Subset(torch.utils.data.Dataset):
    """Items ``ids`` of ``data``, with their labels (what `Pipeline` reads)."""

    def __init__(self, data: Any, ids: list[int]) -> None:
        self.data, self.ids = data, ids
        labels = getattr(data, "labels", None)
        self.labels = torch.as_tensor(labels)[ids] if labels is not None else torch.tensor([int(data[i][1]) for i in ids])

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, j: int) -> Any:
        return self.data[self.ids[j]]


class FeatureWorker:
    """Gallery features of a batch of ids: columns ``id``, ``label``, ``pooled`` (float32 bytes),
    ``maps`` (when the pipeline re-ranks: store-dtype bytes, or float32 when the store keeps cells),
    ``store_layout``, ``_error``."""

    def __init__(self, job: dict[str, Any], data: Any = None, num_cpus: float | None = None) -> None:
        from ..pipeline import Pipeline
        from .spec import JobSpec

        set_threads(num_cpus)
        self.job = JobSpec.model_validate(job)
        spec = self.job.pipeline
        self.pipe = Pipeline(spec)
        self.pipe.model.to(_device(self.job.num_gpus))
        self.data = data if data is not None else load_source(self.job.gallery)  # type: ignore[arg-type]
        self.maps = self.pipe.needs_maps
        self.layout = self.pipe.store_layout if self.maps else "maps"  # cells: what every re-ranker reads
        self.pa = require_pyarrow()

    def __call__(self, batch: dict[str, Any]) -> Any:
        pa, f = self.pa, self.job.pipeline.features
        ids = [int(i) for i in np.asarray(batch["id"])]
        sub = _Subset(self.data, ids)
        try:
            pooled, maps = [], []
            for _, feats in self.pipe.encode(sub, batch_size=len(ids)):
                pooled.append(feats.pooled[f.pooled_layer].detach().float().cpu())
                if self.maps:
                    maps.append(feats.maps[f.spatial_layer].detach().float().cpu())
            p = torch.cat(pooled).numpy()
            cols: dict[str, Any] = {"id": ids, "label": sub.labels.tolist(), "pooled": [r.tobytes() for r in p], "_error": [None] * len(ids)}
            if self.maps:
                # cells are normalised from float32 maps by the store writer, then rounded to the store's dtype
                half = self.job.store_dtype == "float16" and self.layout == "maps"
                m = torch.cat(maps).numpy().astype(np.float16 if half else np.float32)
                cols["maps"] = [r.tobytes() for r in m]
                cols["map_shape"] = [list(m.shape[1:])] * len(ids)
                cols["store_layout"] = [self.layout] * len(ids)
            cols["dim"] = [p.shape[1]] * len(ids)
            return pa.table(cols)
        except Exception as exc:  # noqa: BLE001 - reported to the driver, which names the image
            return pa.table({"id": ids, "label": sub.labels.tolist(), "pooled": [None] * len(ids),
                             "_error": [f"{type(exc).__name__}: {exc}"] * len(ids), "dim": [0] * len(ids)})


class QueryWorker:
    """Results rows for a batch of query ids (schema: `xcorr_core.jobs.table.result_schema`)."""

    def __init__(self, job: dict[str, Any], gallery_dir: str, data: Any = None, num_cpus: float | None = None) -> None:
        from ..pipeline import Pipeline
        from .gallery_files import open_gallery
        from .spec import JobSpec

        set_threads(num_cpus)
        self.job = JobSpec.model_validate(job)
        self.pipe = Pipeline(self.job.pipeline)
        self.pipe.model.to(_device(self.job.num_gpus))
        index, store, info = open_gallery(gallery_dir, verify=self.job.store.verify, need_store=self.pipe.needs_maps)
        self.pipe.attach(index, store, num_classes=info["num_classes"])
        self.data = data if data is not None else load_source(self.job.data)  # type: ignore[arg-type]
        self.source = self.job.data
        self.methods = self.pipe.methods
        self.metrics = self.pipe.metric_names
        self.schema = result_schema(self.methods, self.metrics, shortlist=len(self.methods) > 1, explain=self.job.explain == "all")
        self.pa = require_pyarrow()
        self.columns = ([n for n in self.schema.names if not n.endswith("_explanations")] + ["_error", "_error_type"]
                        + [f"_expl__{m}" for m in self.methods])

    def __call__(self, batch: dict[str, Any]) -> Any:
        ids = [int(i) for i in np.asarray(batch["id"])]
        for _attempt in range(2):  # a batch that raises is tried once more (a transient fault costs a retry)
            try:
                return self._rows(ids)
            except Exception:  # noqa: BLE001
                pass
        tables = []
        for i in ids:  # it keeps failing: one query at a time, the bad ones become error rows
            try:
                tables.append(self._rows([i]))
            except Exception as exc:  # noqa: BLE001
                tables.append(self._error_rows([i], exc))
        return self.pa.concat_tables(tables)

    def _error_rows(self, ids: list[int], exc: BaseException) -> Any:
        pa = self.pa
        cols: dict[str, Any] = {}
        for field in self.schema:
            if field.name == "query_id":
                cols["query_id"] = pa.array(ids, pa.int64())
            elif field.name == "path":
                cols["path"] = pa.array([item_path(self.data, i, self.source) for i in ids], pa.string())
            elif field.name == "label":
                labels = getattr(self.data, "labels", None)
                cols["label"] = pa.array([int(labels[i]) if labels is not None else None for i in ids], pa.int64())
            elif not field.name.endswith("_explanations"):
                cols[field.name] = pa.nulls(len(ids), field.type)
        msg = f"{exc}"
        where = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
        if where is not None:
            msg += f" (at {Path(where.filename).name}:{where.lineno})"
        cols["_error"] = pa.array([msg] * len(ids), pa.string())
        cols["_error_type"] = pa.array([type(exc).__name__] * len(ids), pa.string())
        for m in self.methods:
            cols[f"_expl__{m}"] = pa.nulls(len(ids), pa.string())
        return pa.table({c: cols[c] for c in self.columns})

    def _rows(self, ids: list[int]) -> Any:
        _inject_faults(ids)
        pa, pipe = self.pa, self.pipe
        sub = _Subset(self.data, ids)
        targets = sub.labels.to(torch.int64)
        decisions = pipe.decide(sub, name="job", progress=False)
        n = len(ids)
        cols: dict[str, Any] = {"query_id": pa.array(ids, pa.int64()),
                                "path": pa.array([item_path(self.data, i, self.source) for i in ids], pa.string()),
                                "label": pa.array(targets.tolist(), pa.int64())}
        explain = self.job.explain == "all"
        images = [sub[j][0] for j in range(n)] if explain else []
        for m in self.methods:
            d = decisions[m]
            if m != "knn" and "shortlist_ids" not in cols:
                cols["shortlist_ids"] = pa.array(d.shortlist_ids.tolist(), pa.list_(pa.int64()))
                cols["shortlist_scores"] = pa.array(d.shortlist_scores.float().tolist(), pa.list_(pa.float32()))
            cols[f"{m}_prediction"] = pa.array(d.predictions.tolist(), pa.int64())
            cols[f"{m}_confidence"] = pa.array(d.confidences.double().tolist(), pa.float64())
            cols[f"{m}_ids"] = pa.array(d.ids.tolist(), pa.list_(pa.int64()))
            cols[f"{m}_scores"] = pa.array(d.scores.float().tolist(), pa.list_(pa.float32()))
            if m != "knn":
                pairs, weights = [], []
                for j in range(n):
                    r = d.rankings[j]
                    top = r.order[: pipe.spec.decision.k]
                    pairs.append(r.pairs[top].to(torch.int32).tolist())
                    weights.append(r.weights[top].float().tolist())
                cols[f"{m}_pairs"] = pa.array(pairs, pa.list_(pa.list_(pa.list_(pa.int32()))))
                cols[f"{m}_weights"] = pa.array(weights, pa.list_(pa.list_(pa.float32())))
            explanations, per_query = [], []
            if explain:
                for j in range(n):
                    case = pipe.case(d, j, targets, query_id=ids[j], image=images[j] if isinstance(images[j], torch.Tensor) else None)
                    exps = pipe.explain_case(case)
                    explanations += exps
                    per_query.append(dump_explanations(exps) if exps else None)
            for name, res in pipe.measure(d, targets, explanations).items():
                ps = res.per_sample
                vals = ps.double().tolist() if ps is not None and ps.numel() == n else [None] * n
                cols[f"{m}__{name}"] = pa.array(vals, pa.float64())
            cols[f"_expl__{m}"] = pa.array(per_query if explain else [None] * n, pa.string())
        cols["_error"] = pa.nulls(n, pa.string())
        cols["_error_type"] = pa.nulls(n, pa.string())
        return pa.table({c: cols[c] for c in self.columns})
