"""The results of a job on disk: a Parquet data set written in parts, a manifest of finished queries,
an errors table and explanation files.

Layout of ``OUT``::

    manifest.json                 job fingerprint and spec, total queries, the parts and the query ids in each
    parts/part-000000.parquet     one row per query (schema: `result_schema`, documented on docs/jobs.md)
    errors/part-000000.parquet    queries that kept failing: query_id, path, label, error_type, error
    explanations/<method>/<query_id>.json   each query's explanations (`load_explanations`)
    summary.json                  per method: accuracy, mean confidence, each metric's mean (when done)
    gallery/                      the gallery the job built (unless the spec names one)

Every file is written to a temporary name and renamed into place; the manifest is rewritten (also
atomically) after each part, so a job killed at any moment resumes with every finished query
exactly once. Readers see only finished parts (temporary files start with a dot, which pyarrow,
pandas and duckdb globs skip). Depends on pyarrow and the core's errors/fileio/results modules.
"""
from __future__ import annotations

import importlib
import json
import time
from pathlib import Path
from typing import Any

from ..errors import ConfigError, InputError
from ..fileio import atomic_write, make_dir

__all__ = ["result_schema", "ResultWriter", "read_results", "read_errors", "read_manifest", "load_explanations", "dump_explanations",
           "require_pyarrow", "id_ranges", "ERROR_COLUMNS", "MANIFEST_FORMAT"]

MANIFEST_FORMAT = "xcorr.Job/1"
ERROR_COLUMNS = ("query_id", "path", "label", "error_type", "error")


def require_pyarrow() -> Any:
    """``pyarrow`` or a `ConfigError` saying how to install it."""
    try:
        import pyarrow
        import pyarrow.parquet  # noqa: F401
    except ImportError as exc:
        raise ConfigError("jobs write Parquet and need pyarrow: pip install 'xcorr-core[ray]' (or just pyarrow for the local executor)") from exc
    return pyarrow


def result_schema(methods: list[str], metrics: list[str], *, shortlist: bool, explain: bool) -> Any:
    """The Arrow schema of the results table.

    Per query: ``query_id``, ``path``, ``label``; ``shortlist_ids`` / ``shortlist_scores`` (the N kNN
    candidates re-rankers saw, when there are re-rankers); per method M (``knn``, then each re-ranker):
    ``M_prediction``, ``M_confidence``, ``M_ids`` / ``M_scores`` (the k neighbours that voted, best
    first), for re-rankers also ``M_pairs`` (per neighbour, its L patch pairs [query cell, candidate
    cell], cells flattened ``h * W + w``) and ``M_weights`` (per neighbour, the L pair weights); per
    method and metric ``M__metric`` (the metric's per-query value); ``M_explanations`` (path of the
    query's explanation file, relative to the output folder)."""
    pa = require_pyarrow()
    fields = [pa.field("query_id", pa.int64(), nullable=False), pa.field("path", pa.string()), pa.field("label", pa.int64())]
    if shortlist:
        fields += [pa.field("shortlist_ids", pa.list_(pa.int64())), pa.field("shortlist_scores", pa.list_(pa.float32()))]
    for m in methods:
        fields += [pa.field(f"{m}_prediction", pa.int64()), pa.field(f"{m}_confidence", pa.float64()),
                   pa.field(f"{m}_ids", pa.list_(pa.int64())), pa.field(f"{m}_scores", pa.list_(pa.float32()))]
        if m != "knn":
            fields += [pa.field(f"{m}_pairs", pa.list_(pa.list_(pa.list_(pa.int32())))), pa.field(f"{m}_weights", pa.list_(pa.list_(pa.float32())))]
        fields += [pa.field(f"{m}__{k}", pa.float64()) for k in metrics]
        if explain:
            fields.append(pa.field(f"{m}_explanations", pa.string()))
    return pa.schema(fields)


def id_ranges(ids: list[int]) -> list[list[int]]:
    """Sorted ids as inclusive runs ``[[a, b], ...]`` (a batch is usually one run)."""
    out: list[list[int]] = []
    for i in sorted(ids):
        if out and i == out[-1][1] + 1:
            out[-1][1] = i
        else:
            out.append([i, i])
    return out


def _expand(ranges: list[list[int]]) -> list[int]:
    return [i for a, b in ranges for i in range(a, b + 1)]


class ResultWriter:
    """Writes parts, errors and explanation files of one job into ``out`` and keeps its manifest.

    Args:
        out: the output folder.
        fingerprint: the job's fingerprint (`JobSpec.fingerprint`); a resumed folder must match it.
        spec: the job spec as JSON-able data (recorded in the manifest).
        total: number of queries in the job.
        resume: continue a folder that holds this job; without it the folder must not hold a job.
    """

    def __init__(self, out: str | Path, *, fingerprint: str, spec: dict[str, Any], total: int, resume: bool) -> None:
        self.pa = require_pyarrow()
        import pyarrow.parquet as pq

        self.pq = pq
        self.out = Path(out)
        self.manifest_path = self.out / "manifest.json"
        if self.manifest_path.is_file():
            try:
                manifest = json.loads(self.manifest_path.read_text())
            except ValueError as exc:
                raise ConfigError(f"{self.manifest_path} is not valid JSON ({exc}); remove the folder or choose another --out") from exc
            if not resume:
                raise ConfigError(f"{self.out} already holds a job ({manifest.get('done', '?')} of {manifest.get('total', '?')} queries done): "
                                  "pass --resume to continue it, or choose another --out")
            if manifest.get("fingerprint") != fingerprint:
                raise ConfigError(f"{self.out} holds a different job (fingerprint {manifest.get('fingerprint')} vs {fingerprint}): "
                                  "the spec, data or gallery changed; choose another --out")
            self.manifest = manifest
            self._drop_unlisted()
        else:
            self.manifest = {"format": MANIFEST_FORMAT, "fingerprint": fingerprint, "spec": spec, "total": total, "done": 0,
                             "errors_count": 0, "parts": [], "errors": [], "status": "running", "seconds": 0.0}
            make_dir(self.out)
            self._save()
        self._t0 = time.perf_counter()
        self._seconds0 = float(self.manifest.get("seconds", 0.0))

    def _drop_unlisted(self) -> None:
        """Parts written but not yet in the manifest when a job died: their queries run again."""
        listed = {p["file"] for p in self.manifest["parts"] + self.manifest["errors"]}
        for sub in ("parts", "errors"):
            for f in (self.out / sub).glob("*.parquet") if (self.out / sub).is_dir() else []:
                if f"{sub}/{f.name}" not in listed:
                    f.unlink()
            for f in (self.out / sub).glob(".*.tmp") if (self.out / sub).is_dir() else []:
                f.unlink()

    def finished_ids(self) -> set[int]:
        """Query ids already in a part or in the errors table."""
        return {i for p in self.manifest["parts"] + self.manifest["errors"] for i in _expand(p["ids"])}

    def _save(self) -> None:
        atomic_write(self.manifest_path, lambda f: f.write(json.dumps(self.manifest, indent=1).encode()))

    def _write_table(self, sub: str, table: Any) -> str:
        seq = len(self.manifest["parts"]) + len(self.manifest["errors"])
        name = f"{sub}/part-{seq:06d}.parquet"
        while (self.out / name).exists():
            seq += 1
            name = f"{sub}/part-{seq:06d}.parquet"
        atomic_write(self.out / name, lambda f: self.pq.write_table(table, f))
        return name

    def write(self, batch: Any, schema: Any) -> tuple[int, int]:
        """Write one worker batch (a pyarrow Table with the result columns and ``_error``,
        ``_error_type``, ``_expl__<method>`` helper columns): its good rows as a part, its failed rows
        into the errors table, explanations as files; then record them in the manifest. Returns (rows, errors)."""
        pa, pc = self.pa, __import__("pyarrow.compute", fromlist=["compute"])
        failed = pc.is_valid(batch["_error"])
        good, bad = batch.filter(pc.invert(failed)), batch.filter(failed)
        entries: list[tuple[str, str, list[int]]] = []
        if good.num_rows:
            cols = {}
            for name in schema.names:
                if name.endswith("_explanations"):
                    method = name[: -len("_explanations")]
                    cols[name] = pa.array(self._explanation_files(method, good["query_id"].to_pylist(), good[f"_expl__{method}"].to_pylist()),
                                          pa.string())
                else:
                    cols[name] = good[name]
            table = pa.table(cols, schema=schema)
            entries.append(("parts", self._write_table("parts", table), good["query_id"].to_pylist()))
        if bad.num_rows:
            table = pa.table({c: bad[c if c not in ("error", "error_type") else f"_{c}"] for c in ERROR_COLUMNS})
            entries.append(("errors", self._write_table("errors", table), bad["query_id"].to_pylist()))
        for kind, name, ids in entries:
            self.manifest[kind].append({"file": name, "rows": len(ids), "ids": id_ranges(ids)})
        self.manifest["done"] += good.num_rows
        self.manifest["errors_count"] += bad.num_rows
        self.manifest["seconds"] = self._seconds0 + time.perf_counter() - self._t0
        self._save()
        return good.num_rows, bad.num_rows

    def _explanation_files(self, method: str, ids: list[int], payloads: list[str | None]) -> list[str | None]:
        out: list[str | None] = []
        for qid, payload in zip(ids, payloads):
            if payload is None:
                out.append(None)
                continue
            rel = f"explanations/{method}/{qid:09d}.json"
            atomic_write(self.out / rel, lambda f, p=payload: f.write(p.encode()))
            out.append(rel)
        return out

    def finish(self, summary: dict[str, Any]) -> None:
        """Mark the job done and write ``summary.json``."""
        atomic_write(self.out / "summary.json", lambda f: f.write(json.dumps(summary, indent=1).encode()))
        self.manifest["status"] = "done"
        self._save()


def read_results(out: str | Path) -> Any:
    """The results table of a job folder as one pyarrow Table, sorted by ``query_id``.
    (``pandas.read_parquet(out / "parts")`` and duckdb's ``'out/parts/*.parquet'`` read it as well.)"""
    require_pyarrow()
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = Path(out)
    manifest = read_manifest(out)
    tables = [pq.read_table(out / p["file"]) for p in manifest["parts"]]
    if not tables:
        raise InputError(f"{out} has no finished results yet")
    return pa.concat_tables(tables).sort_by("query_id")


def read_errors(out: str | Path) -> Any:
    """The errors table (query_id, path, label, error_type, error), possibly empty."""
    require_pyarrow()
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = Path(out)
    tables = [pq.read_table(out / p["file"]) for p in read_manifest(out)["errors"]]
    if not tables:
        return pa.table({"query_id": pa.array([], pa.int64()), "path": pa.array([], pa.string()), "label": pa.array([], pa.int64()),
                         "error_type": pa.array([], pa.string()), "error": pa.array([], pa.string())})
    return pa.concat_tables(tables).sort_by("query_id")


def read_manifest(out: str | Path) -> dict[str, Any]:
    """A job folder's ``manifest.json`` (its spec, parts and status); `InputError` if it holds no job."""
    out = Path(out)
    path = out / "manifest.json"
    if not path.is_file():
        raise InputError(f"{out} is not a job folder (no manifest.json)")
    return json.loads(path.read_text())


def load_explanations(path: str | Path) -> list[Any]:
    """The explanations in one file of ``explanations/`` as their own `Explanation` subclasses."""
    data = json.loads(Path(path).read_text())
    out = []
    for item in data:
        module, _, name = item["type"].rpartition(".")
        cls = getattr(importlib.import_module(module), name)
        out.append(cls.model_validate_json(item["json"]))
    return out


def dump_explanations(explanations: list[Any]) -> str:
    """JSON text of a list of explanations, each with its class (what `load_explanations` reads)."""
    return json.dumps([{"type": f"{type(e).__module__}.{type(e).__qualname__}", "json": e.to_json()} for e in explanations])
