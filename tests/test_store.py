"""SpatialStore: float16 memory-mapped maps, gathered in any order; corrupt files rejected."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import xcorr_core as xc


def test_round_trip_and_gather(tmp_path: Path) -> None:
    maps = torch.randn(12, 8, 3, 3)
    store = xc.SpatialStore.create(tmp_path / "maps", 12, (8, 3, 3), layer="layer4")
    assert not (tmp_path / "maps.npy").exists()  # nothing visible before finalize
    store.write(0, maps[:5])
    store.write(5, maps[5:])
    store = store.finalize()
    assert store.layer == "layer4" and store.map_shape == (8, 3, 3) and len(store) == 12
    pos = torch.tensor([7, 2, 11, 2])
    got = store.get(pos)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, maps[pos].half().float())
    assert isinstance(xc.SpatialStore.open(tmp_path / "maps")._array, np.memmap)


def test_write_errors(tmp_path: Path) -> None:
    store = xc.SpatialStore.create(tmp_path / "m", 4, (2, 2, 2))
    with pytest.raises(xc.InputError):
        store.write(3, torch.zeros(2, 2, 2, 2))
    with pytest.raises(xc.InputError):
        store.write(0, torch.zeros(1, 3, 2, 2))
    with pytest.raises(xc.InputError, match="NaN"):
        store.write(0, torch.full((1, 2, 2, 2), float("inf")))
    store = store.finalize()
    with pytest.raises(xc.InputError, match="out of range"):
        store.get([4])


def test_corrupt_and_mismatched(tmp_path: Path) -> None:
    xc.SpatialStore.from_tensor(tmp_path / "m", torch.zeros(6, 2, 2, 2))
    npy = tmp_path / "m.npy"
    raw = npy.read_bytes()
    npy.write_bytes(raw[: len(raw) - 10])
    with pytest.raises(xc.IndexFileError, match="corrupt or truncated"):
        xc.SpatialStore.open(tmp_path / "m")
    npy.write_bytes(raw)
    meta = json.loads((tmp_path / "m.json").read_text())
    meta["shape"] = [6, 2, 2, 3]
    (tmp_path / "m.json").write_text(json.dumps(meta))
    with pytest.raises(xc.IndexFileError, match="description says"):
        xc.SpatialStore.open(tmp_path / "m")
    (tmp_path / "m.json").write_text("{not json")
    with pytest.raises(xc.IndexFileError, match="JSON"):
        xc.SpatialStore.open(tmp_path / "m")
    with pytest.raises(xc.IndexFileError, match="no spatial store"):
        xc.SpatialStore.open(tmp_path / "absent")


def test_cell_maps_round_trip_and_layout() -> None:
    g = torch.Generator().manual_seed(0)
    maps = torch.randn(4, 6, 3, 2, generator=g)
    maps[1, :, 2, 0] = 0  # a zero cell stays a zero unit vector
    cells = xc.CellMaps.from_maps(maps)
    assert cells.unit.shape == (4, 6, 6) and cells.norms.shape == (4, 6) and cells.mean.shape == (4, 6) and cells.grid == (3, 2)
    assert cells.unit.is_contiguous()
    # by hand: cell (h=1, w=0) of map 2 is index 1 * 2 + 0 = 2
    v = maps[2, :, 1, 0]
    assert torch.allclose(cells.unit[2, 2], v / v.norm()) and torch.isclose(cells.norms[2, 2], v.norm())
    assert torch.equal(cells.unit[1, 4], torch.zeros(6)) and float(cells.norms[1, 4]) == 0.0
    assert torch.allclose(cells.mean, maps.mean((2, 3)))
    assert torch.allclose(cells.maps(), maps, atol=1e-6)
    assert cells.unflatten((2, 2)).unit.shape == (2, 2, 6, 6)
    with pytest.raises(xc.InputError):
        xc.CellMaps.from_maps(torch.ones(4, 6, dtype=torch.int64))


@pytest.mark.parametrize("dtype,tol", [("float32", 1e-6), ("float16", 2e-3)])
def test_cells_layout_store(tmp_path: Path, dtype: str, tol: float) -> None:
    g = torch.Generator().manual_seed(1)
    maps = torch.rand(9, 5, 3, 3, generator=g) * 1e5  # beyond float16: the cells layout keeps norms in float32
    store = xc.SpatialStore.from_tensor(tmp_path / "s", maps, layout="cells", dtype=dtype)
    assert store.layout == "cells" and store.dtype == dtype and store.map_shape == (5, 3, 3)
    pos = torch.tensor([7, 0, 7, 3])
    got = store.get_cells(pos)
    want = xc.CellMaps.from_maps(maps[pos])
    assert torch.allclose(got.unit, want.unit, atol=tol) and torch.equal(got.norms, want.norms) and torch.equal(got.mean, want.mean)
    assert torch.allclose(store.get(pos), maps[pos], rtol=tol, atol=0)
    again = xc.SpatialStore.open(tmp_path / "s")  # both files verified
    assert torch.equal(again.get_cells(pos).unit, got.unit)
    aux = tmp_path / "s.cells.npy"
    raw = bytearray(aux.read_bytes())
    raw[-3] ^= 0xFF
    aux.write_bytes(bytes(raw))
    with pytest.raises(xc.IndexFileError, match="checksum"):
        xc.SpatialStore.open(tmp_path / "s")
    aux.unlink()
    with pytest.raises(xc.IndexFileError, match="cells.npy"):
        xc.SpatialStore.open(tmp_path / "s")


def test_maps_layout_float32_and_get_cells(tmp_path: Path) -> None:
    maps = torch.rand(5, 4, 2, 2) * 1e5
    with pytest.raises(xc.InputError, match="float16"):
        xc.SpatialStore.from_tensor(tmp_path / "h", maps)
    store = xc.SpatialStore.from_tensor(tmp_path / "f", maps, dtype="float32")
    assert torch.equal(store.get([3, 1]), maps[[3, 1]])
    assert torch.allclose(store.get_cells([3, 1]).unit, xc.CellMaps.from_maps(maps[[3, 1]]).unit)
    with pytest.raises(xc.InputError, match="layout"):
        xc.SpatialStore.create(tmp_path / "x", 2, (1, 1, 1), layout="rows")  # type: ignore[arg-type]
