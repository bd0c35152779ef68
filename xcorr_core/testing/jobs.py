"""A synthetic job folder of any size, without a model: random decisions, neighbours and patch
pairs in the layout `xcorr run` writes (manifest, Parquet parts, a gallery folder with its index).
For the browser site's benchmark and for tests of tools that read job folders. Depends on numpy,
pyarrow and the core's jobs, index and fileio modules.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..fileio import atomic_write, make_dir, sealed
from ..index import GalleryIndex
from ..jobs.gallery_files import GALLERY_FORMAT, file_sha256
from ..jobs.table import MANIFEST_FORMAT, id_ranges, require_pyarrow, result_schema

__all__ = ["synthetic_job"]


def synthetic_job(out: str | Path, rows: int, *, classes: int = 200, gallery: int = 6000, rerankers: tuple[str, ...] = ("emd_corr",),
                  k: int = 20, pairs: int = 5, grid: tuple[int, int] = (7, 7), accuracy: float = 0.8, part_rows: int = 10_000,
                  seed: int = 0) -> Path:
    """Write a finished job of ``rows`` queries into ``out`` (kNN plus ``rerankers``, one metric,
    no explanation files, no data source: a site built from it has no pictures). Each method is
    right with probability about ``accuracy``; its k neighbours are gallery items, the true class
    among them when it is right. Returns ``out``."""
    pa = require_pyarrow()
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    out = Path(out)
    make_dir(out / "parts")
    glabels = np.arange(gallery) % classes
    by_class = [np.flatnonzero(glabels == c) for c in range(classes)]
    methods = ["knn", *rerankers]
    schema = result_schema(methods, ["top1_accuracy"], shortlist=False, explain=False)
    parts = []
    for start in range(0, rows, part_rows):
        n = min(part_rows, rows - start)
        ids = np.arange(start, start + n)
        labels = rng.integers(0, classes, n)
        cols: dict[str, Any] = {"query_id": ids, "path": [f"synthetic/{i:09d}" for i in ids], "label": labels}
        for m in methods:
            right = rng.random(n) < accuracy
            pred = np.where(right, labels, (labels + rng.integers(1, classes, n)) % classes)
            neigh = rng.integers(0, gallery, (n, k))
            for r in range(n):
                neigh[r, : k // 2 + 1] = rng.choice(by_class[pred[r]], k // 2 + 1)
            scores = np.sort(rng.random((n, k)).astype(np.float32), axis=1)[:, ::-1]
            cols[f"{m}_prediction"] = pred
            cols[f"{m}_confidence"] = np.round(0.5 + 0.5 * rng.random(n), 2)
            cols[f"{m}_ids"] = list(neigh)
            cols[f"{m}_scores"] = list(scores)
            if m != "knn":
                cells = rng.integers(0, grid[0] * grid[1], (n, k, pairs, 2)).astype(np.int32)
                cols[f"{m}_pairs"] = cells.tolist()
                cols[f"{m}_weights"] = rng.random((n, k, pairs)).astype(np.float32).tolist()
            cols[f"{m}__top1_accuracy"] = right.astype(np.float64)
        table = pa.table({name: cols[name] for name in schema.names}, schema=schema)
        name = f"parts/part-{len(parts):06d}.parquet"
        pq.write_table(table, out / name)
        parts.append({"file": name, "rows": n, "ids": id_ranges(ids.tolist())})
    gdir = make_dir(out / "gallery")
    index = GalleryIndex.build(torch.from_numpy(rng.standard_normal((gallery, 8)).astype(np.float32)), torch.from_numpy(glabels))
    index.save(gdir / "gallery.index")
    info = {"format": GALLERY_FORMAT, "fingerprint": "synthetic", "source": "synthetic", "n": gallery, "num_classes": classes, "dim": 8,
            "map_shape": [8, *grid], "index_sha256": file_sha256(gdir / "gallery.index")}
    atomic_write(gdir / "gallery.json", lambda f: f.write(json.dumps(sealed(info)).encode()))
    manifest = {"format": MANIFEST_FORMAT, "fingerprint": "synthetic", "spec": {"data": None, "gallery": None}, "total": rows, "done": rows,
                "errors_count": 0, "parts": parts, "errors": [], "status": "done", "seconds": 0.0}
    atomic_write(out / "manifest.json", lambda f: f.write(json.dumps(manifest).encode()))
    return out
