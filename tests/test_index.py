"""GalleryIndex: exact search equals brute force; errors; atomic, verified persistence."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import xcorr_core as xc


def _data(n: int, d: int, seed: int) -> torch.Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed))


@given(st.integers(1, 60), st.integers(1, 24), st.integers(1, 8), st.data())
def test_cosine_search_is_the_brute_force_top_k(n: int, d: int, q: int, data) -> None:
    k = data.draw(st.integers(1, n))
    seed = data.draw(st.integers(0, 10_000))
    g, queries = _data(n, d, seed), _data(q, d, seed + 1)
    idx = xc.GalleryIndex(d)
    idx.add(g, labels=torch.arange(n) % 3, ids=torch.arange(n) * 10 + 7)
    res = idx.search(queries, k)
    sims = torch.nn.functional.normalize(queries, dim=1) @ torch.nn.functional.normalize(g, dim=1).T
    ref = sims.topk(k, dim=1).values
    torch.testing.assert_close(res.scores, ref, atol=1e-4, rtol=1e-4)
    # the returned items really have those scores (ties may order differently)
    torch.testing.assert_close(sims.gather(1, res.positions), res.scores, atol=1e-4, rtol=1e-4)
    assert torch.equal(res.ids, res.positions * 10 + 7) and torch.equal(res.labels, res.positions % 3)


def test_l2_and_incremental_add() -> None:
    g = _data(50, 8, 0)
    idx = xc.GalleryIndex(8, metric="l2")
    idx.add(g[:20])
    idx.add(g[20:])
    res = idx.search(g[:5], 3)
    d2 = torch.cdist(g[:5], g) ** 2
    torch.testing.assert_close(-res.scores, d2.topk(3, largest=False).values, atol=1e-3, rtol=1e-4)
    assert torch.equal(res.positions[:, 0], torch.arange(5))


def test_hnsw_recall_on_clustered_data() -> None:
    g = _data(2000, 32, 1)
    idx = xc.GalleryIndex(32, kind="hnsw")
    idx.add(g)
    exact = xc.GalleryIndex(32)
    exact.add(g)
    q = g[:100] + 0.05 * _data(100, 32, 2)
    approx, truth = idx.search(q, 10), exact.search(q, 10)
    recall = sum(len(set(a) & set(b)) for a, b in zip(approx.positions.tolist(), truth.positions.tolist())) / 1000
    assert recall > 0.9


def test_errors() -> None:
    idx = xc.GalleryIndex(4)
    with pytest.raises(xc.InputError, match="empty"):
        idx.search(torch.rand(1, 4), 1)
    idx.add(torch.rand(3, 4))
    with pytest.raises(xc.InputError, match="k=4"):
        idx.search(torch.rand(1, 4), 4)
    with pytest.raises(xc.InputError, match="dimension 5"):
        idx.search(torch.rand(1, 5), 1)
    with pytest.raises(xc.InputError, match="NaN"):
        idx.search(torch.tensor([[float("nan"), 0, 0, 0]]), 1)
    with pytest.raises(xc.InputError, match="zero vector"):
        idx.add(torch.zeros(1, 4))
    with pytest.raises(xc.InputError, match="unique"):
        idx.add(torch.rand(1, 4), ids=torch.tensor([0]))
    with pytest.raises(xc.InputError, match="labels"):
        idx.add(torch.rand(2, 4), labels=torch.tensor([1]))
    with pytest.raises(xc.InputError):
        xc.GalleryIndex(4, metric="manhattan")  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", ["flat", "hnsw"])
def test_save_load_round_trip(tmp_path: Path, kind: str) -> None:
    g = _data(40, 6, 3)
    idx = xc.GalleryIndex(6, kind=kind)
    idx.add(g, labels=torch.arange(40) % 4, ids=torch.arange(40) + 100)
    path = idx.save(tmp_path / "g.index")
    back = xc.GalleryIndex.load(path, expected_dim=6)
    a, b = idx.search(g[:3], 5), back.search(g[:3], 5)
    assert torch.equal(a.ids, b.ids) and torch.equal(a.labels, b.labels)
    assert [p.name for p in tmp_path.iterdir()] == ["g.index"]  # no temp files left behind


def test_load_detects_bad_files(tmp_path: Path) -> None:
    idx = xc.GalleryIndex(6)
    idx.add(_data(10, 6, 0))
    path = idx.save(tmp_path / "g.index")
    with pytest.raises(xc.IndexFileError, match="6-d vectors but 7-d"):
        xc.GalleryIndex.load(path, expected_dim=7)
    raw = bytearray(path.read_bytes())
    (tmp_path / "trunc.index").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(xc.IndexFileError, match="not a readable"):
        xc.GalleryIndex.load(tmp_path / "trunc.index")
    with pytest.raises(xc.IndexFileError, match="no index file"):
        xc.GalleryIndex.load(tmp_path / "missing.index")
    torch.save({"weights": torch.zeros(3)}, tmp_path / "other.pt")
    with pytest.raises(xc.IndexFileError, match="not an xcorr gallery index"):
        xc.GalleryIndex.load(tmp_path / "other.pt")
    # flip the labels inside a valid payload: the checksum catches it
    payload = torch.load(path, weights_only=True)
    payload["labels"][0] += 1
    torch.save(payload, tmp_path / "tampered.index")
    with pytest.raises(xc.IndexFileError, match="checksum"):
        xc.GalleryIndex.load(tmp_path / "tampered.index")


def test_failed_save_keeps_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    idx = xc.GalleryIndex(3)
    idx.add(_data(5, 3, 0))
    path = idx.save(tmp_path / "g.index")
    before = path.read_bytes()

    def broken_save(obj, f):
        f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    idx.add(_data(5, 3, 1))
    with pytest.raises(OSError, match="disk full"):
        idx.save(path)
    assert path.read_bytes() == before and len(list(tmp_path.iterdir())) == 1
