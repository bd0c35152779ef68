"""`SpatialStore`: the gallery's spatial feature maps on disk, float16, memory-mapped.

Re-rankers compare a query's map with the maps of its shortlist; reading them
from this store (instead of re-encoding the images per query) is what keeps a
re-ranking pipeline fast. Layout: ``NAME.npy`` (an `[N, C, H, W]` float16 array)
and ``NAME.json`` (format, layer, shape, ids, SHA-256 of the array file). Both are written atomically.
Depends on numpy, torch and the core's errors/fileio modules.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .errors import IndexFileError, InputError
from .fileio import atomic_write

__all__ = ["SpatialStore"]

_FORMAT = "xcorr.SpatialStore/1"


def _sha256(path: str | Path, chunk: int = 1 << 24) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


class SpatialStore:
    """A read-only (after `finalize`) array of N spatial maps `[C, H, W]`.

    Build one with `SpatialStore.create`, fill it with `write`, then `finalize`;
    open an existing one with `SpatialStore.open`.
    """

    def __init__(self, array: np.ndarray, meta: dict[str, Any], path: Path | None) -> None:
        self._array = array
        self.meta = meta
        self.path = path
        self._tmp: str | None = None

    # -- building ----------------------------------------------------------------
    @classmethod
    def create(cls, path: str | Path, n: int, map_shape: tuple[int, int, int], *, layer: str = "", ids: torch.Tensor | None = None) -> "SpatialStore":
        """Start a store for ``n`` maps of shape ``map_shape`` `(C, H, W)` at ``path`` (``.npy``)."""
        if n < 1 or len(map_shape) != 3 or min(map_shape) < 1:
            raise InputError(f"need n >= 1 and a (C, H, W) map shape, got n={n}, map_shape={map_shape}")
        path = Path(path).with_suffix(".npy")
        path.parent.mkdir(parents=True, exist_ok=True)
        ids_list = (ids.tolist() if ids is not None else list(range(n)))
        if len(ids_list) != n:
            raise InputError(f"ids has {len(ids_list)} entries for {n} maps")
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp's 0600 would surprise users of a shared store
        try:
            arr = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float16, shape=(n, *map_shape))
        except BaseException:
            os.unlink(tmp)
            raise
        meta = {"format": _FORMAT, "layer": layer, "shape": [n, *map_shape], "ids": ids_list}
        store = cls(arr, meta, path)
        store._tmp = tmp
        return store

    def write(self, start: int, maps: torch.Tensor) -> None:
        """Write ``maps`` `[b, C, H, W]` at rows ``start .. start + b``."""
        if self._tmp is None:
            raise InputError("this store is finalized (read-only)")
        b = maps.shape[0]
        if tuple(maps.shape[1:]) != tuple(self.meta["shape"][1:]) or start < 0 or start + b > len(self):
            raise InputError(f"cannot write maps {list(maps.shape)} at {start} into a store of shape {self.meta['shape']}")
        if maps.is_floating_point() and not bool(torch.isfinite(maps).all()):
            raise InputError("maps contain NaN/inf")
        if maps.numel() and float(maps.detach().abs().max()) > 65504.0:
            raise InputError(f"maps reach {float(maps.detach().abs().max()):.3g}, above the float16 range (65504) of the store: "
                             "scale the features down (e.g. normalise them) before storing")
        self._array[start:start + b] = maps.detach().to("cpu", torch.float16).numpy()

    def abort(self) -> None:
        """Discard an unfinished store: its temporary file is removed, nothing is moved into place."""
        if self._tmp is None:
            return
        tmp, self._tmp = self._tmp, None
        del self._array
        if os.path.exists(tmp):
            os.unlink(tmp)

    def finalize(self) -> "SpatialStore":
        """Flush and move the data into place atomically; the store becomes read-only."""
        if self._tmp is None:
            return self
        self._array.flush()
        del self._array
        self.meta["sha256"] = _sha256(self._tmp)
        os.replace(self._tmp, self.path)
        self._tmp = None
        meta_path = self.path.with_suffix(".json")
        atomic_write(meta_path, lambda f: f.write(json.dumps(self.meta).encode()))
        return SpatialStore.open(self.path, verify=False)

    # -- reading -----------------------------------------------------------------
    @classmethod
    def open(cls, path: str | Path, *, verify: bool = True) -> "SpatialStore":
        """Open a finalized store memory-mapped; `IndexFileError` if missing, corrupt or mismatched.

        ``verify`` reads the file once to check its SHA-256 against the description (a flipped byte
        is an error, never a wrong map); pass False to skip that read for a store you just wrote."""
        path = Path(path).with_suffix(".npy")
        meta_path = path.with_suffix(".json")
        if not path.is_file() or not meta_path.is_file():
            raise IndexFileError(f"no spatial store at {path} (needs {path.name} and {meta_path.name})")
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, ValueError) as exc:
            raise IndexFileError(f"{meta_path} is not valid JSON: {exc}") from exc
        if not isinstance(meta, dict) or meta.get("format") != _FORMAT:
            raise IndexFileError(f"{meta_path} is not an xcorr spatial store description")
        try:
            arr = np.load(path, mmap_mode="r", allow_pickle=False)
        except Exception as exc:
            raise IndexFileError(f"{path} is corrupt or truncated ({type(exc).__name__}: {exc})") from exc
        if list(arr.shape) != meta["shape"] or arr.dtype != np.float16 or len(meta["ids"]) != arr.shape[0]:
            raise IndexFileError(f"{path} holds {arr.dtype} {list(arr.shape)} but its description says float16 {meta['shape']}")
        if verify and "sha256" in meta and _sha256(path) != meta["sha256"]:
            raise IndexFileError(f"{path} does not match the checksum in {meta_path.name}: the file is corrupt")
        return cls(arr, meta, path)

    @classmethod
    def from_tensor(cls, path: str | Path, maps: torch.Tensor, *, layer: str = "", ids: torch.Tensor | None = None) -> "SpatialStore":
        """Write all of ``maps`` `[N, C, H, W]` and return the opened store."""
        store = cls.create(path, maps.shape[0], tuple(maps.shape[1:]), layer=layer, ids=ids)
        store.write(0, maps)
        return store.finalize()

    def __len__(self) -> int:
        return int(self.meta["shape"][0])

    @property
    def map_shape(self) -> tuple[int, int, int]:
        """`(C, H, W)` of each map."""
        return tuple(self.meta["shape"][1:])  # type: ignore[return-value]

    @property
    def layer(self) -> str:
        return str(self.meta.get("layer", ""))

    def get(self, positions: torch.Tensor | list[int], *, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Maps at row ``positions`` `[k]` as a `[k, C, H, W]` tensor on ``device``."""
        pos = torch.as_tensor(positions, dtype=torch.int64).cpu()
        if pos.ndim != 1:
            raise InputError(f"positions must be 1-D, got shape {list(pos.shape)}")
        if pos.numel() and (int(pos.min()) < 0 or int(pos.max()) >= len(self)):
            raise InputError(f"positions out of range for a store of {len(self)} maps")
        # sorted read keeps the memory-mapped access sequential, then restore the order
        order = torch.argsort(pos)
        rows = np.asarray(self._array[pos[order].numpy()])
        out = torch.empty((pos.numel(), *self.map_shape), dtype=torch.float16)
        out[order] = torch.from_numpy(rows)
        return out.to(device=device, dtype=dtype)
