"""Executors: where a job's workers run. Both map a worker class over batches of ids and yield
its output tables in id order.

`LocalExecutor` — one worker in this process (no Ray needed). `RayExecutor` — Ray Data
``map_batches`` with an actor pool: each actor builds its worker (model, index, store) once; an
actor that dies is restarted and its batch retried by Ray (``max_restarts`` / ``max_task_retries``).
Without ``address`` a local Ray is started and shut down when the executor closes; with one, the
job connects to that cluster and only disconnects. Depends on numpy, and on ray only when used.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from typing import Any

import numpy as np

from ..errors import ConfigError

__all__ = ["LocalExecutor", "RayExecutor", "make_executor"]


def _chunks(ids: list[int], size: int) -> Iterator[list[int]]:
    for s in range(0, len(ids), size):
        yield ids[s:s + size]


class LocalExecutor:
    """Runs the worker in this process, batch after batch."""

    name = "local"
    workers = 1

    def map(self, worker_cls: type, kwargs: dict[str, Any], ids: list[int], batch_size: int) -> Iterator[Any]:
        if not ids:
            return
        worker = worker_cls(**kwargs)
        for chunk in _chunks(ids, batch_size):
            yield worker({"id": np.asarray(chunk, dtype=np.int64)})

    def close(self) -> None:
        pass

    def __enter__(self) -> "LocalExecutor":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class RayExecutor:
    """Ray Data over an actor pool of ``workers`` actors.

    Args:
        address: an existing cluster (``ray://host:10001`` or ``auto``); None starts a local Ray.
        workers: actors in the pool.
        num_cpus: CPUs per actor (default: the cluster's CPUs / workers, at least 1).
        num_gpus: GPUs per actor (0: CPU only).
    """

    name = "ray"

    def __init__(self, address: str | None = None, workers: int = 2, *, num_cpus: float | None = None, num_gpus: float = 0.0) -> None:
        try:
            import ray
            import ray.data  # noqa: F401
        except ImportError as exc:
            raise ConfigError("--executor ray needs Ray: pip install 'xcorr-core[ray]'") from exc
        if workers < 1:
            raise ConfigError(f"workers must be >= 1, got {workers}")
        self.ray = ray
        self._owns = False
        if not ray.is_initialized():
            os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")
            kw: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "logging_level": logging.ERROR}
            if address:
                ray.init(address=address, **kw)
            else:
                ray.init(num_cpus=os.cpu_count() or 1, **kw)
                self._owns = True
        cpus = float(ray.cluster_resources().get("CPU", 1.0))
        self.workers = workers
        self.num_cpus = num_cpus if num_cpus is not None else max(1.0, float(int(cpus // workers)))
        self.num_gpus = num_gpus
        ctx = ray.data.DataContext.get_current()
        ctx.execution_options.preserve_order = True  # output batches in id order: the same parts as the local executor
        ctx.enable_progress_bars = False  # the job shows its own progress bar
        logging.getLogger("ray.data").setLevel(logging.WARNING)

    def map(self, worker_cls: type, kwargs: dict[str, Any], ids: list[int], batch_size: int) -> Iterator[Any]:
        if not ids:
            return
        import pyarrow as pa

        ray = self.ray
        # one block per batch, so every actor gets work from the start
        ds = ray.data.from_arrow([pa.table({"id": pa.array(c, pa.int64())}) for c in _chunks(ids, batch_size)])
        extra: dict[str, Any] = {"num_gpus": self.num_gpus} if self.num_gpus > 0 else {}
        # Ray Data restarts a dead actor and retries its batch (max_restarts = max_task_retries = -1 by default)
        out = ds.map_batches(worker_cls, fn_constructor_kwargs={**kwargs, "num_cpus": self.num_cpus}, batch_size=batch_size,
                             batch_format="numpy", compute=ray.data.ActorPoolStrategy(size=self.workers), num_cpus=self.num_cpus, **extra)
        yield from out.iter_batches(batch_size=batch_size, batch_format="pyarrow")

    def close(self) -> None:
        if self._owns and self.ray.is_initialized():
            self.ray.shutdown()
            self._owns = False

    def __enter__(self) -> "RayExecutor":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def make_executor(name: str, *, address: str | None = None, workers: int = 2, num_gpus: float = 0.0) -> LocalExecutor | RayExecutor:
    """``"local"`` or ``"ray"``."""
    if name == "local":
        if address:
            raise ConfigError("--address needs --executor ray")
        return LocalExecutor()
    if name == "ray":
        return RayExecutor(address, workers, num_gpus=num_gpus)
    raise ConfigError(f"unknown executor {name!r}: use 'local' or 'ray'")
