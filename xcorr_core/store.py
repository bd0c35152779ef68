"""`SpatialStore`: the gallery's spatial feature maps on disk, float16, memory-mapped.

Re-rankers compare a query's map with the maps of its shortlist; reading them
from this store (instead of re-encoding the images per query) is what keeps a
re-ranking pipeline fast. Two layouts:

* ``maps``: ``NAME.npy`` an `[N, C, H, W]` array (float16 or float32), the maps as extracted;
* ``cells``: the layout patch-matching re-rankers read (`CellMaps`): ``NAME.npy`` `[N, HW, C]` unit
  cells (float16 or float32) and ``NAME.cells.npy`` float32 `[N, HW + C]` (cell norms, then the
  mean vector), prepared once here instead of on every re-rank.

``NAME.json`` describes the store (format, layout, dtype, layer, map shape, ids, SHA-256 of each
array file). Every file is written atomically. Depends on numpy, torch and the core's
errors/fileio/cells modules.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from .cells import CellMaps
from .errors import IndexFileError, InputError
from .fileio import atomic_write, make_dir, reserve, storage_error

__all__ = ["SpatialStore"]

_FORMAT = "xcorr.SpatialStore/1"
_DTYPES = {"float16": np.float16, "float32": np.float32}
Layout = Literal["maps", "cells"]


def _sha256(path: str | Path, chunk: int = 1 << 24) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


class SpatialStore:
    """A read-only (after `finalize`) array of N spatial maps `[C, H, W]`, in the ``maps`` or the
    ``cells`` layout (see the module's docstring); `get` returns maps whatever the layout,
    `get_cells` returns `CellMaps` (without per-call work in the ``cells`` layout).

    Build one with `SpatialStore.create`, fill it with `write`, then `finalize`;
    open an existing one with `SpatialStore.open`.
    """

    def __init__(self, array: np.ndarray, meta: dict[str, Any], path: Path | None, aux: np.ndarray | None = None) -> None:
        self._array = array
        self._aux = aux  # cells layout: float32 [N, HW + C] (norms, mean)
        self.meta = meta
        self.path = path
        self._tmp: list[str] | None = None

    @property
    def layout(self) -> Layout:
        return self.meta.get("layout", "maps")  # type: ignore[no-any-return]

    @property
    def dtype(self) -> str:
        return str(self.meta.get("dtype", "float16"))

    @staticmethod
    def _aux_path(path: Path) -> Path:
        return path.with_suffix(".cells.npy")

    # -- building ----------------------------------------------------------------
    @classmethod
    def create(cls, path: str | Path, n: int, map_shape: tuple[int, int, int], *, layer: str = "", ids: torch.Tensor | None = None,
               layout: Layout = "maps", dtype: str = "float16") -> "SpatialStore":
        """Start a store for ``n`` maps of shape ``map_shape`` `(C, H, W)` at ``path`` (``.npy``).

        ``layout``: ``"maps"`` or ``"cells"``; ``dtype``: ``"float16"`` (half the bytes) or ``"float32"``
        of the maps / unit cells (the cells layout keeps norms and means in float32 either way)."""
        if n < 1 or len(map_shape) != 3 or min(map_shape) < 1:
            raise InputError(f"need n >= 1 and a (C, H, W) map shape, got n={n}, map_shape={map_shape}")
        if layout not in ("maps", "cells"):
            raise InputError(f"layout must be 'maps' or 'cells', got {layout!r}")
        if dtype not in _DTYPES:
            raise InputError(f"dtype must be 'float16' or 'float32', got {dtype!r}")
        path = Path(path).with_suffix(".npy")
        make_dir(path.parent)
        ids_list = (ids.tolist() if ids is not None else list(range(n)))
        if len(ids_list) != n:
            raise InputError(f"ids has {len(ids_list)} entries for {n} maps")
        c, h, w = map_shape
        shapes = [(n, c, h, w)] if layout == "maps" else [(n, h * w, c), (n, h * w + c)]
        kinds = [_DTYPES[dtype], np.float32]
        tmps: list[str] = []
        arrays: list[np.ndarray] = []
        umask = os.umask(0)
        os.umask(umask)
        try:
            for target, shape, kind in zip([path, cls._aux_path(path)], shapes, kinds):
                fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=path.parent)
                os.close(fd)
                tmps.append(tmp)
                os.chmod(tmp, 0o666 & ~umask)  # mkstemp's 0600 would surprise users of a shared store
                arrays.append(np.lib.format.open_memmap(tmp, mode="w+", dtype=kind, shape=shape))
                reserve(tmp, os.path.getsize(tmp))  # blocks now: a full disk is an error here, not a SIGBUS on write
        except BaseException as exc:
            arrays.clear()
            for tmp in tmps:
                os.unlink(tmp)
            err = storage_error(exc, path)
            if err is not None and err is not exc:
                raise err from exc
            raise
        meta = {"format": _FORMAT, "layout": layout, "dtype": dtype, "layer": layer, "shape": [n, *map_shape], "ids": ids_list}
        store = cls(arrays[0], meta, path, arrays[1] if layout == "cells" else None)
        store._tmp = tmps
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
        maps = maps.detach().to("cpu", torch.float32)
        if self.layout == "cells":
            cells = CellMaps.from_maps(maps)  # unit cells cannot leave the float16 range; norms and means stay float32
            self._array[start:start + b] = cells.unit.numpy().astype(_DTYPES[self.dtype], copy=False)
            assert self._aux is not None
            self._aux[start:start + b] = torch.cat([cells.norms, cells.mean], 1).numpy()
            return
        if self.dtype == "float16" and maps.numel() and float(maps.abs().max()) > 65504.0:
            raise InputError(f"maps reach {float(maps.abs().max()):.3g}, above the float16 range (65504) of the store: "
                             "scale the features down (e.g. normalise them), store float32 or use the cells layout")
        self._array[start:start + b] = maps.numpy().astype(_DTYPES[self.dtype], copy=False)

    def abort(self) -> None:
        """Discard an unfinished store: its temporary files are removed, nothing is moved into place."""
        if self._tmp is None:
            return
        tmps, self._tmp = self._tmp, None
        del self._array
        self._aux = None
        for tmp in tmps:
            if os.path.exists(tmp):
                os.unlink(tmp)

    def finalize(self) -> "SpatialStore":
        """Flush and move the data into place atomically; the store becomes read-only."""
        if self._tmp is None:
            return self
        assert self.path is not None
        self._array.flush()
        if self._aux is not None:
            self._aux.flush()
        del self._array
        self._aux = None
        targets = [self.path, self._aux_path(self.path)][:len(self._tmp)]
        self.meta["sha256"] = _sha256(self._tmp[0])
        if len(self._tmp) > 1:
            self.meta["cells_sha256"] = _sha256(self._tmp[1])
        for tmp, target in zip(self._tmp, targets):
            os.replace(tmp, target)
        self._tmp = None
        meta_path = self.path.with_suffix(".json")
        atomic_write(meta_path, lambda f: f.write(json.dumps(self.meta).encode()))
        return SpatialStore.open(self.path, verify=False)

    # -- reading -----------------------------------------------------------------
    @classmethod
    def open(cls, path: str | Path, *, verify: bool = True) -> "SpatialStore":
        """Open a finalized store memory-mapped; `IndexFileError` if missing, corrupt or mismatched.

        ``verify`` reads the files once to check their SHA-256 against the description (a flipped byte
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
        layout, dtype = meta.get("layout", "maps"), meta.get("dtype", "float16")
        if layout not in ("maps", "cells") or dtype not in _DTYPES:
            raise IndexFileError(f"{meta_path} names an unknown layout {layout!r} or dtype {dtype!r}")
        n, c, h, w = meta["shape"]
        files = [(path, (n, c, h, w) if layout == "maps" else (n, h * w, c), _DTYPES[dtype], "sha256")]
        if layout == "cells":
            files.append((cls._aux_path(path), (n, h * w + c), np.float32, "cells_sha256"))
        arrays = []
        for f, shape, kind, key in files:
            try:
                arr = np.load(f, mmap_mode="r", allow_pickle=False)
            except Exception as exc:
                raise IndexFileError(f"{f} is missing, corrupt or truncated ({type(exc).__name__}: {exc})") from exc
            if tuple(arr.shape) != shape or arr.dtype != kind or len(meta["ids"]) != arr.shape[0]:
                raise IndexFileError(f"{f} holds {arr.dtype} {list(arr.shape)} but its description says {np.dtype(kind)} {list(shape)}")
            if verify and key in meta and _sha256(f) != meta[key]:
                raise IndexFileError(f"{f} does not match the checksum in {meta_path.name}: the file is corrupt")
            arrays.append(arr)
        return cls(arrays[0], meta, path, arrays[1] if layout == "cells" else None)

    @classmethod
    def from_tensor(cls, path: str | Path, maps: torch.Tensor, *, layer: str = "", ids: torch.Tensor | None = None,
                    layout: Layout = "maps", dtype: str = "float16") -> "SpatialStore":
        """Write all of ``maps`` `[N, C, H, W]` and return the opened store."""
        store = cls.create(path, maps.shape[0], tuple(maps.shape[1:]), layer=layer, ids=ids, layout=layout, dtype=dtype)
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

    def _rows(self, array: np.ndarray, positions: torch.Tensor | list[int]) -> torch.Tensor:
        """Rows ``positions`` of ``array`` as a tensor, read in sorted order (sequential on disk)."""
        pos = torch.as_tensor(positions, dtype=torch.int64).cpu()
        if pos.ndim != 1:
            raise InputError(f"positions must be 1-D, got shape {list(pos.shape)}")
        if pos.numel() and (int(pos.min()) < 0 or int(pos.max()) >= len(self)):
            raise InputError(f"positions out of range for a store of {len(self)} maps")
        order = torch.argsort(pos)
        rows = torch.from_numpy(np.asarray(array[pos[order].numpy()]))
        out = torch.empty_like(rows)
        out[order] = rows
        return out

    def get(self, positions: torch.Tensor | list[int], *, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Maps at row ``positions`` `[k]` as a `[k, C, H, W]` tensor on ``device`` (either layout)."""
        if self.layout == "cells":
            return self.get_cells(positions, device=device, dtype=dtype).maps()
        return self._rows(self._array, positions).to(device=device, dtype=dtype)

    def get_cells(self, positions: torch.Tensor | list[int], *, device: torch.device | str = "cpu",
                  dtype: torch.dtype = torch.float32) -> CellMaps:
        """`CellMaps` of rows ``positions`` `[k]` (unit `[k, HW, C]`): read as stored in the ``cells``
        layout, converted (transpose and normalisation) in the ``maps`` layout."""
        if self.layout == "maps":
            return CellMaps.from_maps(self.get(positions, device=device, dtype=dtype))
        assert self._aux is not None
        _, c, h, w = self.meta["shape"]
        unit = self._rows(self._array, positions).to(device=device, dtype=dtype)
        aux = self._rows(self._aux, positions).to(device=device, dtype=dtype)
        return CellMaps(unit=unit, norms=aux[:, :h * w], mean=aux[:, h * w:], grid=(h, w))
