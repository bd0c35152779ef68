"""Reading a gallery folder that `gallery.build_gallery` wrote: its description (``gallery.json``,
sealed with its own checksum), the checksummed index, the memory-mapped vectors and the sharded
store. Used by the gallery builder (to resume) and by the query workers (to search). Depends on
numpy and the core's errors, fileio, index and shards modules.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import IndexFileError
from ..fileio import check_seal
from ..index import GalleryIndex
from ..shards import ShardedStore

__all__ = ["GALLERY_FORMAT", "open_gallery", "file_sha256"]

GALLERY_FORMAT = "xcorr.Gallery/1"


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's bytes, read in 16 MB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 24):
            h.update(block)
    return h.hexdigest()


def _read_info(folder: Path) -> dict[str, Any] | None:
    path = folder / "gallery.json"
    if not path.is_file():
        return None
    try:
        info = json.loads(path.read_text())
    except ValueError as exc:
        raise IndexFileError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(info, dict) or info.get("format") != GALLERY_FORMAT:
        raise IndexFileError(f"{path} is not an xcorr gallery description")
    return check_seal(info, path)


def open_gallery(folder: str | Path, *, verify: str = "rows", need_store: bool = True) -> tuple[GalleryIndex, ShardedStore | None, dict[str, Any]]:
    """The index, store and description of a built gallery; `IndexFileError` if unfinished or corrupt."""
    folder = Path(folder)
    info = _read_info(folder)
    if info is None:
        raise IndexFileError(f"no finished gallery at {folder} (gallery.json is missing): build it with `xcorr index build`")
    ipath = folder / "gallery.index"
    if not ipath.is_file() or file_sha256(ipath) != info["index_sha256"]:
        raise IndexFileError(f"{ipath} is missing or does not match its checksum in gallery.json")
    index = GalleryIndex.load(ipath, expected_dim=info["dim"])
    if index.refine > 1 and index.kind != "flat":  # exact re-scoring reads the memory-mapped vectors
        vpath = folder / "vectors.npy"
        if not vpath.is_file():
            raise IndexFileError(f"{vpath} is missing (the index re-scores from it: refine={index.refine})")
        index.attach_vectors(np.load(vpath, mmap_mode="r"))
    store = None
    if need_store:
        if not info.get("map_shape"):
            raise IndexFileError(f"the gallery at {folder} has no spatial store (built for a pipeline without re-rankers)")
        store = ShardedStore.open(folder / "store", verify=verify)  # type: ignore[arg-type]
        if len(store) != len(index):
            raise IndexFileError(f"{folder}: store has {len(store)} maps, index {len(index)} vectors")
    return index, store, info
