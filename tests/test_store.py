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
