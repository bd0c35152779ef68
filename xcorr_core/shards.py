"""`ShardedStore`: a gallery's spatial maps split over many memory-mapped ``.npy`` shards, for
galleries larger than RAM (the single-file `SpatialStore` is the in-memory pipeline's store).

Layout of a store folder::

    store.json            format, layout, layer, shape [N, C, H, W], dtype, rows per shard, shard files and
                          sizes, SHA-256 of crc32.npy
    crc32.npy             uint32 [N]: CRC-32 of each row's bytes, checked on every read
    shard-00000.npy ...   layout "maps": [rows, C, H, W] float16 (default) or float32;
                          layout "cells" (what patch-matching re-rankers read, `CellMaps`): [rows, HW, C]
                          unit cells, float16 or float32
    shard-00000.cells.npy layout "cells" only: float32 [rows, HW + C], each cell's norm, then the map's mean
                          (the row's CRC-32 covers its unit cells and these)

Reading N candidates touches only their rows (each row is contiguous on disk), checks each row's
CRC-32 (a flipped byte is an `IndexFileError`, never a wrong map) and then tells the kernel to drop
the mapped pages, so a long job's resident memory does not grow with the store. Rows can be written
in any order; `finalize` moves everything into place, the description last.

Disk space: the writer checks that the whole store fits before it writes anything, and allocates
each shard's blocks (fallocate) before writing through its memory map, so a full disk is a
`StorageError` and never a SIGBUS; after any failed write, everything it wrote is removed. Depends on numpy, torch
and the core's errors/fileio modules.
"""
from __future__ import annotations

import hashlib
import json
import mmap
import os
import zlib
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from .cells import CellMaps
from .errors import IndexFileError, InputError, StorageError
from .fileio import atomic_write, check_seal, free_bytes, make_dir, reserve, sealed, storage_error

__all__ = ["ShardedStore", "ShardedStoreWriter"]

_FORMAT = "xcorr.ShardedStore/1"
_DTYPES = {"float16": np.float16, "float32": np.float32}


_RELEASE_EVERY = 32  # rows read between two releases of the mapped pages


def _drop_pages(arr: np.ndarray) -> None:
    """Unmap the pages of a memory-mapped array from this process (a shared file mapping: they stay
    in the page cache). Reading a row from a file written moments ago can map far more than the row:
    the kernel maps whole large folios (ext4 on Linux >= 6.16), up to 2 MB a fault."""
    mm = getattr(arr, "_mmap", None)
    if isinstance(mm, mmap.mmap) and hasattr(mm, "madvise"):
        mm.madvise(mmap.MADV_DONTNEED)


def _crc_rows(rows: np.ndarray, aux: np.ndarray | None = None) -> np.ndarray:
    """uint32 `[b]` CRC-32 of each row of a C-contiguous `[b, ...]` array (continued over the row of
    ``aux`` `[b, ...]` when given)."""
    flat = np.ascontiguousarray(rows).reshape(rows.shape[0], -1).view(np.uint8)
    if aux is None:
        return np.fromiter((zlib.crc32(r) for r in flat), dtype=np.uint32, count=rows.shape[0])
    extra = np.ascontiguousarray(aux).reshape(aux.shape[0], -1).view(np.uint8)
    return np.fromiter((zlib.crc32(e, zlib.crc32(r)) for r, e in zip(flat, extra)), dtype=np.uint32, count=rows.shape[0])


def _row_shapes(layout: str, map_shape: tuple[int, ...]) -> tuple[tuple[int, ...], tuple[int, ...] | None]:
    """Per-row shapes of the shard array and of the cells' float32 side array (None for maps)."""
    c, h, w = map_shape
    return ((c, h, w), None) if layout == "maps" else ((h * w, c), (h * w + c,))


class ShardedStoreWriter:
    """Fill a new `ShardedStore` row by row (any order), then `finalize` (or `abort`).

    Args:
        path: the store folder (created; must not hold a finalized store).
        n: number of maps N.
        map_shape: `(C, H, W)`.
        dtype: ``"float16"`` (half the bytes; ~1e-3 relative error) or ``"float32"``.
        shard_rows: maps per shard file.
        layer: the layer the maps come from (recorded).
        layout: ``"maps"`` or ``"cells"`` (unit cells + float32 norms and means: re-rankers that read
            cells, like EMD-Corr, skip the per-call transpose and normalisation).
    """

    def __init__(self, path: str | Path, n: int, map_shape: tuple[int, int, int], *, dtype: Literal["float16", "float32"] = "float16",
                 shard_rows: int = 4096, layer: str = "", layout: Literal["maps", "cells"] = "maps") -> None:
        if n < 1 or len(map_shape) != 3 or min(map_shape) < 1 or shard_rows < 1:
            raise InputError(f"need n >= 1, a (C, H, W) map shape and shard_rows >= 1; got n={n}, map_shape={map_shape}, shard_rows={shard_rows}")
        if dtype not in _DTYPES:
            raise InputError(f"dtype must be 'float16' or 'float32', got {dtype!r}")
        if layout not in ("maps", "cells"):
            raise InputError(f"layout must be 'maps' or 'cells', got {layout!r}")
        self.path = Path(path)
        self._made_dir = not self.path.exists()
        make_dir(self.path)
        self.n, self.map_shape, self.dtype, self.shard_rows, self.layer = n, tuple(map_shape), dtype, shard_rows, layer
        self.layout = layout
        self._row, self._aux_row = _row_shapes(layout, self.map_shape)
        self._shards: dict[int, np.memmap] = {}
        self._aux: dict[int, np.memmap] = {}
        self._crc = np.zeros(n, dtype=np.uint32)
        self._written = np.zeros(n, dtype=bool)
        self._placed: list[Path] = []  # files finalize moved into place (removed if it fails)
        need, free = self.nbytes_needed, free_bytes(self.path)
        if need > free:
            self._remove_dir()
            raise StorageError(f"a sharded store of {n} maps {list(map_shape)} ({dtype}, {layout}) needs {need:,} bytes, "
                               f"but {self.path} has {free:,} free: free some space, write elsewhere, or use dtype='float16'")

    @property
    def nbytes_needed(self) -> int:
        """Bytes the finished store takes on disk (shards, side arrays, checksums; descriptions aside)."""
        item = np.dtype(_DTYPES[self.dtype]).itemsize
        per_row = int(np.prod(self._row)) * item + (int(np.prod(self._aux_row)) * 4 if self._aux_row is not None else 0) + 4
        shards = -(-self.n // self.shard_rows) * (2 if self._aux_row is not None else 1)
        return self.n * per_row + shards * 128 + 4096

    def _remove_dir(self) -> None:
        if self._made_dir:
            try:
                self.path.rmdir()  # only if empty: never another's files
            except OSError:
                pass

    def _tmp_name(self, s: int, aux: bool = False) -> Path:
        return self.path / f".shard-{s:05d}{'.cells' if aux else ''}.npy.tmp"

    def _shard(self, s: int) -> np.memmap:
        if s not in self._shards:
            rows = min(self.shard_rows, self.n - s * self.shard_rows)
            try:
                self._shards[s] = self._open_tmp(self._tmp_name(s), _DTYPES[self.dtype], (rows, *self._row))
                if self._aux_row is not None:
                    self._aux[s] = self._open_tmp(self._tmp_name(s, True), np.float32, (rows, *self._aux_row))
            except OSError as exc:
                self.abort()
                raise (storage_error(exc, self._tmp_name(s)) or exc) from exc
        return self._shards[s]

    @staticmethod
    def _open_tmp(path: Path, dtype: Any, shape: tuple[int, ...]) -> np.memmap:
        """A new ``.npy`` memory map whose disk blocks are allocated before anything is written to it."""
        mm = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape)
        reserve(path, path.stat().st_size)
        return mm

    def write(self, start: int, maps: torch.Tensor | np.ndarray) -> None:
        """Write ``maps`` `[b, C, H, W]` at rows ``start .. start + b``."""
        arr = maps.detach().cpu().float().numpy() if isinstance(maps, torch.Tensor) else np.asarray(maps)
        b = arr.shape[0]
        if tuple(arr.shape[1:]) != self.map_shape or start < 0 or start + b > self.n:
            raise InputError(f"cannot write maps {list(arr.shape)} at {start} into a store of shape {[self.n, *self.map_shape]}")
        if not np.isfinite(arr).all():
            raise InputError("maps contain NaN/inf")
        aux = None
        if self.layout == "cells":  # unit cells cannot leave the float16 range; norms and means stay float32
            cells = CellMaps.from_maps(torch.from_numpy(np.array(arr, dtype=np.float32)))  # a writable float32 copy
            arr = cells.unit.numpy()
            aux = torch.cat([cells.norms, cells.mean], 1).numpy()
        elif self.dtype == "float16" and arr.size and float(np.abs(arr).max()) > 65504.0:
            raise InputError(f"maps reach {float(np.abs(arr).max()):.3g}, above the float16 range (65504): use dtype='float32', "
                             "the cells layout, or scale the features down")
        arr = arr.astype(_DTYPES[self.dtype], copy=False)
        self._crc[start:start + b] = _crc_rows(arr, aux)
        self._written[start:start + b] = True
        r = start
        while r < start + b:
            s, off = divmod(r, self.shard_rows)
            take = min(self.shard_rows - off, start + b - r)
            mm = self._shard(s)
            mm[off:off + take] = arr[r - start:r - start + take]
            _drop_pages(mm)  # written pages stay in the page cache (and reach the disk), not in our RSS
            if aux is not None:
                self._aux[s][off:off + take] = aux[r - start:r - start + take]
                _drop_pages(self._aux[s])
            r += take

    def abort(self) -> None:
        """Remove every file this writer made (unfinished shards, and what a failed `finalize` had
        moved into place), and its folder if it made it."""
        for s in range(-(-self.n // self.shard_rows)):
            self._shards.pop(s, None)
            self._aux.pop(s, None)
            self._tmp_name(s).unlink(missing_ok=True)
            self._tmp_name(s, True).unlink(missing_ok=True)
        for f in self._placed:
            f.unlink(missing_ok=True)
        self._placed.clear()
        self._remove_dir()

    def finalize(self) -> "ShardedStore":
        """Move shards into place, write the row checksums and the description (last); open the store."""
        if not self._written.all():
            missing = np.flatnonzero(~self._written)
            raise InputError(f"{missing.size} rows were never written (first: {missing[:5].tolist()})")
        try:
            shards = []
            for s in range((self.n + self.shard_rows - 1) // self.shard_rows):
                mm = self._shard(s)
                mm.flush()
                del mm
                self._shards.pop(s, None)
                name = f"shard-{s:05d}.npy"
                os.replace(self._tmp_name(s), self.path / name)
                self._placed.append(self.path / name)
                entry = {"file": name, "rows": min(self.shard_rows, self.n - s * self.shard_rows), "bytes": (self.path / name).stat().st_size}
                if self._aux_row is not None:
                    self._aux.pop(s).flush()
                    aux_name = f"shard-{s:05d}.cells.npy"
                    os.replace(self._tmp_name(s, True), self.path / aux_name)
                    self._placed.append(self.path / aux_name)
                    entry |= {"aux_file": aux_name, "aux_bytes": (self.path / aux_name).stat().st_size}
                shards.append(entry)
            crc_path = atomic_write(self.path / "crc32.npy", lambda f: np.save(f, self._crc, allow_pickle=False))
            self._placed.append(crc_path)
            meta = {"format": _FORMAT, "layout": self.layout, "layer": self.layer, "shape": [self.n, *self.map_shape], "dtype": self.dtype,
                    "shard_rows": self.shard_rows, "shards": shards, "crc32_sha256": hashlib.sha256(crc_path.read_bytes()).hexdigest()}
            atomic_write(self.path / "store.json", lambda f: f.write(json.dumps(sealed(meta), indent=1).encode()))
        except OSError as exc:
            self.abort()
            raise (storage_error(exc, self.path) or exc) from exc
        return ShardedStore.open(self.path)


class ShardedStore:
    """Read-only sharded store of N maps `[C, H, W]`; the same reading interface as `SpatialStore`
    (``get``, ``get_cells``, ``layout``, ``map_shape``, ``len``, ``layer``), so a `Pipeline` can use either.

    Args (of `open`):
        verify: ``"rows"`` (default) checks the CRC-32 of every row read; ``"full"`` also reads every
            shard once at open; ``"none"`` checks sizes and headers only.
    """

    def __init__(self, path: Path, meta: dict[str, Any], crc: np.ndarray, verify: str) -> None:
        self.path, self.meta, self._crc, self.verify = path, meta, crc, verify
        self._maps: dict[tuple[int, bool], np.memmap] = {}
        self._row, self._aux_row = _row_shapes(self.layout, self.map_shape)

    @classmethod
    def open(cls, path: str | Path, *, verify: Literal["rows", "full", "none"] = "rows") -> "ShardedStore":
        """Open a finalized store; `IndexFileError` if missing, truncated, corrupt or inconsistent."""
        path = Path(path)
        if verify not in ("rows", "full", "none"):
            raise InputError(f"verify must be 'rows', 'full' or 'none', got {verify!r}")
        meta_path = path / "store.json"
        if not meta_path.is_file():
            raise IndexFileError(f"no sharded store at {path} (needs store.json)")
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, ValueError) as exc:
            raise IndexFileError(f"{meta_path} is not valid JSON: {exc}") from exc
        if not isinstance(meta, dict) or meta.get("format") != _FORMAT:
            raise IndexFileError(f"{meta_path} is not an xcorr sharded store description")
        check_seal(meta, meta_path)
        if meta.get("layout", "maps") not in ("maps", "cells") or meta.get("dtype") not in _DTYPES:
            raise IndexFileError(f"{meta_path} names an unknown layout {meta.get('layout')!r} or dtype {meta.get('dtype')!r}")
        crc_path = path / "crc32.npy"
        try:
            raw = crc_path.read_bytes()
        except OSError as exc:
            raise IndexFileError(f"{crc_path} is missing ({exc})") from exc
        if hashlib.sha256(raw).hexdigest() != meta.get("crc32_sha256"):
            raise IndexFileError(f"{crc_path} does not match its checksum in store.json: the file is corrupt")
        crc = np.load(crc_path, allow_pickle=False)
        n, per = meta["shape"][0], meta.get("shard_rows")
        if crc.shape != (n,) or sum(s["rows"] for s in meta["shards"]) != n:
            raise IndexFileError(f"{path}: the description's {n} rows do not match its shards / checksums")
        if not isinstance(per, int) or per < 1 or [s["rows"] for s in meta["shards"]] != [min(per, n - i * per) for i in range(-(-n // per))]:
            raise IndexFileError(f"{meta_path}: shard_rows={per!r} does not match its shards' rows: the description was edited")
        row_shape, aux_shape = _row_shapes(meta.get("layout", "maps"), tuple(meta["shape"][1:]))
        row_bytes = int(np.prod(row_shape)) * np.dtype(_DTYPES[meta["dtype"]]).itemsize
        for s in meta["shards"]:
            files = [(s["file"], s["bytes"], row_bytes)]
            if aux_shape is not None:
                files.append((s.get("aux_file", ""), s.get("aux_bytes", -1), int(np.prod(aux_shape)) * 4))
            for name, want, per_row in files:
                f = path / name
                if not name or not f.is_file():
                    raise IndexFileError(f"shard {f} is missing")
                size = f.stat().st_size
                if size != want or size < s["rows"] * per_row:
                    raise IndexFileError(f"shard {f} has {size} bytes, its description says {want}: the file is truncated or replaced")
        store = cls(path, meta, crc, verify)
        if verify == "full":
            for i in range(len(meta["shards"])):
                start = i * meta["shard_rows"]
                rows = np.asarray(store._shard(i))
                aux = np.asarray(store._shard(i, True)) if aux_shape is not None else None
                bad = np.flatnonzero(_crc_rows(rows, aux) != crc[start:start + rows.shape[0]])
                if bad.size:
                    raise IndexFileError(f"{path / meta['shards'][i]['file']}: {bad.size} row(s) fail their checksum (first: row {start + int(bad[0])})")
                store._release()
        return store

    def _shard(self, s: int, aux: bool = False) -> np.memmap:
        """Shard ``s`` (its cells' float32 side array with ``aux``), memory-mapped."""
        if (s, aux) not in self._maps:
            entry = self.meta["shards"][s]
            f = self.path / (entry["aux_file"] if aux else entry["file"])
            try:
                arr = np.load(f, mmap_mode="r", allow_pickle=False)
            except Exception as exc:
                raise IndexFileError(f"{f} is corrupt or truncated ({type(exc).__name__}: {exc})") from exc
            want = (entry["rows"], *(self._aux_row if aux else self._row))  # type: ignore[misc]
            kind = np.float32 if aux else _DTYPES[self.meta["dtype"]]
            if arr.shape != want or arr.dtype != kind:
                raise IndexFileError(f"{f} holds {arr.dtype} {list(arr.shape)}, its description says {np.dtype(kind)} {list(want)}")
            self._maps[(s, aux)] = arr
        return self._maps[(s, aux)]

    def _release(self) -> None:
        """Drop the mapped pages from this process (they stay in the page cache): bounded RSS."""
        for arr in self._maps.values():
            _drop_pages(arr)

    def __len__(self) -> int:
        return int(self.meta["shape"][0])

    @property
    def map_shape(self) -> tuple[int, int, int]:
        """`(C, H, W)` of each map."""
        return tuple(self.meta["shape"][1:])  # type: ignore[return-value]

    @property
    def layer(self) -> str:
        return str(self.meta.get("layer", ""))

    @property
    def layout(self) -> Literal["maps", "cells"]:
        return self.meta.get("layout", "maps")  # type: ignore[no-any-return]

    @property
    def nbytes(self) -> int:
        """Bytes of all shards on disk."""
        return sum(int(s["bytes"]) for s in self.meta["shards"])

    def _read(self, positions: torch.Tensor | list[int]) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
        """Rows ``positions`` as stored (and their cells' side rows), in sorted order, checksummed; with
        the permutation that puts them back in the order asked for."""
        pos = torch.as_tensor(positions, dtype=torch.int64).cpu()
        if pos.ndim != 1:
            raise InputError(f"positions must be 1-D, got shape {list(pos.shape)}")
        if pos.numel() and (int(pos.min()) < 0 or int(pos.max()) >= len(self)):
            raise InputError(f"positions out of range for a store of {len(self)} maps")
        p = pos.numpy()
        order = np.argsort(p, kind="stable")
        sp = p[order]
        rows = np.empty((p.size, *self._row), dtype=_DTYPES[self.meta["dtype"]])
        aux = np.empty((p.size, *self._aux_row), dtype=np.float32) if self._aux_row is not None else None
        shard_of = sp // self.meta["shard_rows"]
        for s in np.unique(shard_of):
            sel = np.flatnonzero(shard_of == s)
            arrays = [(rows, self._shard(int(s)))] + ([(aux, self._shard(int(s), True))] if aux is not None else [])
            for out, shard in arrays:
                for g in range(0, sel.size, _RELEASE_EVERY):  # a page fault may map a whole large folio (up to 2 MB)
                    part = sel[g:g + _RELEASE_EVERY]
                    out[part] = shard[sp[part] - int(s) * self.meta["shard_rows"]]
                    _drop_pages(shard)
        if self.verify != "none" and p.size:
            bad = np.flatnonzero(_crc_rows(rows, aux) != self._crc[sp])
            if bad.size:
                raise IndexFileError(f"{self.path}: row {int(sp[bad[0]])} fails its checksum: the store is corrupt")
        self._release()
        return rows, aux, order

    @staticmethod
    def _unsort(rows: np.ndarray, order: np.ndarray) -> torch.Tensor:
        out = torch.empty(rows.shape, dtype=torch.from_numpy(rows[:0]).dtype)
        out[torch.from_numpy(order)] = torch.from_numpy(rows)
        return out

    def get(self, positions: torch.Tensor | list[int], *, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Maps at rows ``positions`` `[k]` as a `[k, C, H, W]` tensor on ``device`` (either layout); only those rows are read."""
        if self.layout == "cells":
            return self.get_cells(positions, device=device, dtype=dtype).maps()
        rows, _, order = self._read(positions)
        return self._unsort(rows, order).to(device=device, dtype=dtype)

    def get_cells(self, positions: torch.Tensor | list[int], *, device: torch.device | str = "cpu",
                  dtype: torch.dtype = torch.float32) -> CellMaps:
        """`CellMaps` of rows ``positions`` `[k]` (unit `[k, HW, C]`): read as stored in the ``cells``
        layout, converted (transpose and normalisation) in the ``maps`` layout."""
        if self.layout == "maps":
            return CellMaps.from_maps(self.get(positions, device=device, dtype=dtype))
        rows, aux, order = self._read(positions)
        assert aux is not None
        _, c, h, w = self.meta["shape"]
        unit = self._unsort(rows, order).to(device=device, dtype=dtype)
        side = self._unsort(aux, order).to(device=device, dtype=dtype)
        return CellMaps(unit=unit, norms=side[:, :h * w], mean=side[:, h * w:], grid=(h, w))
