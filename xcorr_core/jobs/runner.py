"""`run_job`: the one entry point of a job, from Python and from ``xcorr run``.

Builds (or reuses) the gallery, hands the queries not yet finished to the executor in batches,
writes each returned batch as a Parquet part (and its failures into the errors table), and at the
end writes ``summary.json``. A progress bar shows queries done, queries/s and time left.
Depends on the core and this package; on Ray only through `RayExecutor`.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from tqdm.auto import tqdm

from ..errors import ConfigError, InputError
from ..sources import load_source, source_size
from .executors import make_executor
from .gallery import build_gallery
from .spec import JobSpec
from .table import ResultWriter, read_results, require_pyarrow, result_schema

__all__ = ["run_job", "JobReport"]


class JobReport(BaseModel):
    """What a finished (or resumed) job did."""

    out: str
    total: int
    done: int
    errors: int
    ran: int
    seconds: float
    queries_per_s: float
    steady_queries_per_s: float | None = None
    executor: str
    workers: int
    summary: dict[str, Any]


def _summary(out: Path, methods: list[str], metrics: list[str]) -> dict[str, Any]:
    """Per method: accuracy, mean confidence and each metric column's mean over finished queries."""
    import pyarrow.compute as pc

    try:
        t = read_results(out)
    except InputError:
        return {}
    res: dict[str, Any] = {"queries": t.num_rows}
    for m in methods:
        correct = pc.equal(t[f"{m}_prediction"], t["label"])
        row = {"top1_accuracy": pc.mean(pc.cast(correct, "float64")).as_py(), "mean_confidence": pc.mean(t[f"{m}_confidence"]).as_py()}
        for k in metrics:
            row[k] = pc.mean(t[f"{m}__{k}"]).as_py()
        res[m] = row
    return res


def run_job(job: JobSpec | str | Path, out: str | Path, *, executor: str = "local", address: str | None = None, workers: int = 2,
            batch_size: int | None = None, resume: bool = False, progress: bool | None = None, data: Any = None,
            gallery_data: Any = None, gallery_dir: str | Path | None = None) -> JobReport:
    """Run ``job`` into ``out``.

    Args:
        job: a `JobSpec` or the path of a job / pipeline spec file.
        out: output folder (see `xcorr_core.jobs.table` for its layout).
        executor: ``"local"`` (this process) or ``"ray"``.
        address: Ray cluster to connect to (default: start a local Ray).
        workers: Ray actors.
        batch_size: queries per batch (default: the job's).
        resume: continue ``out`` (skip finished queries); without it ``out`` must not hold a job.
        data, gallery_data: Dataset objects instead of the job's sources (Python API; with Ray they
            are shipped to every actor).
        gallery_dir: a gallery built by ``xcorr index build`` (default: the job's, else ``out/gallery``).
    """
    require_pyarrow()
    job = JobSpec.from_file(job) if isinstance(job, (str, Path)) else job
    if data is None and job.data is None:
        raise ConfigError("the job names no query data: give `data:` in the job file or --data")
    out = Path(out)
    bs = batch_size or job.batch_size
    if bs < 1:
        raise ConfigError(f"batch size must be >= 1, got {bs}")
    gdir = Path(gallery_dir or job.gallery_dir or out / "gallery")
    total = len(data) if data is not None else source_size(job.data)  # type: ignore[arg-type]
    writer = ResultWriter(out, fingerprint=job.fingerprint(), spec=job.model_dump(mode="json", by_alias=True), total=total, resume=resume)
    todo = sorted(set(range(total)) - writer.finished_ids())
    t0 = time.perf_counter()
    with make_executor(executor, address=address, workers=workers, num_gpus=job.num_gpus) as ex:
        if not (gallery_dir or job.gallery_dir):
            build_gallery(job, gdir, ex, data=gallery_data, progress=progress)
        from ..pipeline import Pipeline
        from .worker import QueryWorker

        pipe = Pipeline(job.pipeline)  # validates the spec here, before any worker starts
        methods, metrics = pipe.methods, pipe.metric_names
        schema = result_schema(methods, metrics, shortlist=len(methods) > 1, explain=job.explain == "all")
        if data is None and ex.name == "local":
            data = load_source(job.data, progress=progress)  # type: ignore[arg-type]
        kwargs = {"job": job.model_dump(mode="json", by_alias=True), "gallery_dir": str(gdir.resolve()), "data": data}
        t0 = time.perf_counter()  # the queries' rate: after the gallery is there
        bar = tqdm(total=total, initial=total - len(todo), desc="queries", unit="query", disable=(None if progress is None else not progress))
        ran, first = 0, None
        try:
            for table in ex.map(QueryWorker, kwargs, todo, bs):
                good, bad = writer.write(table, schema)
                if first is None:  # workers are up: the steady rate counts from here
                    first = (time.perf_counter(), good + bad)
                ran += good + bad
                bar.update(good + bad)
                if bad:
                    bar.set_postfix(errors=writer.manifest["errors_count"])
        finally:
            bar.close()
    t_end = time.perf_counter()
    seconds = t_end - t0
    steady = (ran - first[1]) / (t_end - first[0]) if first is not None and ran > first[1] and t_end > first[0] else None
    summary = _summary(out, methods, metrics)
    summary["errors"] = writer.manifest["errors_count"]
    if writer.manifest["done"] + writer.manifest["errors_count"] == total:
        writer.finish(summary)
    return JobReport(out=str(out), total=total, done=writer.manifest["done"], errors=writer.manifest["errors_count"], ran=ran,
                     seconds=seconds, queries_per_s=ran / seconds if seconds > 0 else 0.0, steady_queries_per_s=steady, executor=executor,
                     workers=getattr(ex, "workers", 1), summary=summary)

