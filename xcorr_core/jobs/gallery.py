"""A gallery on disk, built as a job (``xcorr index build``): features extracted by the executor's
workers, pooled vectors in a memory-mapped ``vectors.npy``, spatial maps in a `ShardedStore`, and
the faiss index the spec names, trained on a sample. ``xcorr index eval`` measures that index's
recall@N against exact search over the same vectors.

Layout of a gallery folder::

    gallery.json    fingerprint, source, N, classes, dimension, map shape, index kind, checksums
    gallery.index   the `GalleryIndex` (ids, labels, checksum inside)
    vectors.npy     float32 [N, D] pooled vectors (what the index was built from; exact search for eval)
    store/          the `ShardedStore` of spatial maps (when the pipeline re-ranks)

``gallery.json`` is written last: a folder without it is unfinished and is rebuilt. Reading a
finished folder is `gallery_files` (which the query workers also use). Depends on numpy, torch,
tqdm and the core.
"""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from ..errors import IndexFileError, InputError
from ..fileio import atomic_write, make_dir, reserve, sealed
from ..index import GalleryIndex
from ..shards import ShardedStoreWriter
from ..sources import load_source
from .gallery_files import GALLERY_FORMAT, _read_info, file_sha256, open_gallery
from .spec import JobSpec

__all__ = ["build_gallery", "open_gallery", "eval_index", "GALLERY_FORMAT"]

def build_gallery(job: JobSpec, folder: str | Path, executor: Any, *, data: Any = None, progress: bool | None = None,
                  reuse: bool = True) -> dict[str, Any]:
    """Build (or, with ``reuse``, keep an up-to-date) gallery for ``job`` in ``folder``; its description.

    ``data`` overrides ``job.gallery`` with a Dataset object (the Python API)."""
    from .table import require_pyarrow
    from .worker import FeatureWorker

    require_pyarrow()  # the workers hand back Arrow tables: say so before anything is written
    folder = Path(folder)
    fp = job.gallery_fingerprint()
    info = _read_info(folder) if folder.is_dir() else None
    if reuse and info is not None and info.get("fingerprint") == fp and data is None:
        return info
    if data is None and job.gallery is None:
        raise InputError("the job names no gallery: give `gallery:` in the job file (or --gallery), or a built gallery_dir")
    gallery = data if data is not None else load_source(job.gallery, progress=progress)  # type: ignore[arg-type]
    n = len(gallery)
    if n == 0:
        raise InputError("the gallery is empty")
    for sub in ("store",):
        shutil.rmtree(folder / sub, ignore_errors=True)
    (folder / "gallery.json").unlink(missing_ok=True)
    make_dir(folder)
    t0 = time.perf_counter()
    vec_tmp = folder / ".vectors.npy.tmp"
    vectors: np.memmap | None = None
    labels = np.full(n, -1, dtype=np.int64)
    writer: ShardedStoreWriter | None = None
    done = 0
    errors: list[str] = []
    kwargs = {"job": job.model_dump(mode="json", by_alias=True), "data": data if data is not None else (gallery if executor.name == "local" else None)}
    bs = job.pipeline.features.batch_size
    bar = tqdm(total=n, desc="gallery", unit="img", disable=(None if progress is None else not progress))
    try:
        for table in executor.map(FeatureWorker, kwargs, list(range(n)), bs):
            cols = table.to_pydict()
            for row, i in enumerate(cols["id"]):
                if cols["_error"][row] is not None:
                    errors.append(f"gallery item {i}: {cols['_error'][row]}")
                    continue
                if vectors is None:
                    vectors = np.lib.format.open_memmap(vec_tmp, mode="w+", dtype=np.float32, shape=(n, cols["dim"][row]))
                    reserve(vec_tmp, vec_tmp.stat().st_size)  # blocks now: a full disk is an error here, not a SIGBUS later
                vectors[i] = np.frombuffer(cols["pooled"][row], dtype=np.float32)
                labels[i] = cols["label"][row]
                if "maps" in cols:
                    shape = tuple(cols["map_shape"][row])
                    layout = cols["store_layout"][row]
                    if writer is None:
                        writer = ShardedStoreWriter(folder / "store", n, shape, dtype=job.store_dtype, shard_rows=job.store.shard_rows,
                                                    layer=job.pipeline.features.spatial_layer or "", layout=layout)
                    sent = np.float32 if layout == "cells" else np.dtype(job.store_dtype)
                    writer.write(i, np.frombuffer(cols["maps"][row], dtype=sent).reshape(1, *shape))
            done += len(cols["id"])
            bar.update(len(cols["id"]))
        bar.close()
        if errors:
            raise InputError(f"{len(errors)} gallery image(s) could not be encoded; fix or remove them and build again:\n  "
                             + "\n  ".join(errors[:10]) + (" ..." if len(errors) > 10 else ""))
        assert vectors is not None
        vectors.flush()
        del vectors
        vec_path = folder / "vectors.npy"
        vec_tmp.replace(vec_path)
        store = writer.finalize() if writer is not None else None
        vecs = np.load(vec_path, mmap_mode="r")
        t_feat = time.perf_counter() - t0
        ix = job.pipeline.index
        t1 = time.perf_counter()
        index = GalleryIndex.build(vecs, torch.from_numpy(labels), metric=ix.metric, kind=ix.kind, train_size=ix.train_size,
                                   seed=job.pipeline.seed, **ix.params())
        index.save(folder / "gallery.index")
        t_index = time.perf_counter() - t1
    except BaseException:
        bar.close()
        if writer is not None:
            writer.abort()
        vec_tmp.unlink(missing_ok=True)
        raise
    info = {"format": GALLERY_FORMAT, "fingerprint": fp, "source": job.gallery.label() if job.gallery else type(gallery).__name__,
            "n": n, "num_classes": int(labels.max()) + 1, "dim": int(vecs.shape[1]), "index": ix.model_dump(),
            "map_shape": list(store.map_shape) if store is not None else None, "store_dtype": job.store_dtype if store is not None else None,
            "store_layout": store.layout if store is not None else None,
            "vectors_sha256": file_sha256(vec_path), "index_sha256": file_sha256(folder / "gallery.index"),
            "seconds": {"features": round(t_feat, 3), "index": round(t_index, 3)}, "bytes": {
                "index": (folder / "gallery.index").stat().st_size, "vectors": vec_path.stat().st_size,
                "store": store.nbytes if store is not None else 0}}
    atomic_write(folder / "gallery.json", lambda f: f.write(json.dumps(sealed(info), indent=1).encode()))
    return info


def eval_index(folder: str | Path, *, k: int = 50, queries: int = 1000, seed: int = 0, nprobe: list[int] | None = None,
               ef_search: list[int] | None = None, refine: list[int] | None = None) -> list[dict[str, float]]:
    """recall@k of the gallery's index against exact search over its own vectors.

    ``queries`` gallery vectors drawn with ``seed`` are searched (each finds itself too, as a held-out
    query near the gallery would find its near-duplicate). One row per search setting: kind, the
    setting, recall@k, ms per query of the index and of exact search. IVF-PQ tries every ``nprobe``
    with every ``refine``."""
    folder = Path(folder)
    index, _, info = open_gallery(folder, need_store=False)
    vpath = folder / "vectors.npy"
    if file_sha256(vpath) != info["vectors_sha256"]:
        raise IndexFileError(f"{vpath} does not match its checksum in gallery.json")
    vecs = np.load(vpath, mmap_mode="r")
    n = vecs.shape[0]
    k = min(k, n)
    rows = np.sort(np.random.default_rng(seed).choice(n, size=min(queries, n), replace=False))
    q = torch.from_numpy(np.array(vecs[rows], dtype=np.float32))
    exact = GalleryIndex(info["dim"], index.metric, "flat")
    for s0 in range(0, n, 65536):
        exact.add(torch.from_numpy(np.array(vecs[s0:s0 + 65536], dtype=np.float32)))
    t = time.perf_counter()
    truth = exact.search(q, k).positions
    t_exact = (time.perf_counter() - t) / len(rows)
    index.attach_vectors(vecs)  # for refine settings
    settings: list[dict[str, int]] = [{}]
    if index.kind == "ivf_pq":
        settings = [{"nprobe": p, "refine": r} for p in (nprobe or [index.nprobe]) for r in (refine or [index.refine])]
    elif index.kind == "ivf_flat":
        settings = [{"nprobe": p} for p in (nprobe or [index.nprobe])]
    elif index.kind == "hnsw":
        settings = [{"ef_search": e} for e in (ef_search or [index.ef_search])]
    out = []
    for s in settings:
        index.set_search_params(**s)
        t = time.perf_counter()
        got = index.search(q, k).positions
        t_ix = (time.perf_counter() - t) / len(rows)
        hits = sum(len(set(a.tolist()) & set(b.tolist())) for a, b in zip(got, truth))
        out.append({"kind": index.kind, **s, "recall": hits / (k * len(rows)), "ms_per_query": 1000 * t_ix,
                    "exact_ms_per_query": 1000 * t_exact, "k": k, "queries": len(rows)})
    return out
