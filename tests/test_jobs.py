"""Jobs without Ray: sources, the sharded store, every index kind, the local executor's table
(equal to the in-memory Pipeline), resume, the errors table, injected faults, the CLI."""
from __future__ import annotations

import json
import os
from pathlib import Path


import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

pa = pytest.importorskip("pyarrow")

from xcorr_core.errors import ConfigError, IndexFileError, InputError  # noqa: E402
from xcorr_core.index import GalleryIndex  # noqa: E402
from xcorr_core.jobs import JobSpec, read_errors, read_results, run_job  # noqa: E402
from xcorr_core.jobs.gallery import open_gallery  # noqa: E402
from xcorr_core.shards import ShardedStore, ShardedStoreWriter  # noqa: E402
from xcorr_core.sources import DataSource, load_source, source_size  # noqa: E402

import xcorr_core as xc  # noqa: E402
from patchmax import _PLUGIN, SMALL, small_job  # noqa: E402


@pytest.fixture(autouse=True)
def _patchmax() -> None:
    xc.register_plugin(_PLUGIN, name="test_jobs_plugin")


# -- sources --------------------------------------------------------------------------------
def test_source_strings() -> None:
    assert DataSource.parse("synthbirds:test:sticker").variant == "sticker"
    assert DataSource.parse("cub:/data/CUB:train").root == "/data/CUB"
    assert DataSource.parse("imagefolder:/x/y").kind == "imagefolder"
    for bad in ("", "mnist:train", "synthbirds:test:clean:extra", "imagefolder:", "synthbirds:valid"):
        with pytest.raises(ConfigError):
            DataSource.parse(bad)
    assert source_size("synthbirds:test") == len(load_source("synthbirds:test"))
    assert source_size({"kind": "synthherd", "split": "test", "per_class": 3}) == len(load_source({"kind": "synthherd", "split": "test", "per_class": 3}))


# -- sharded store ----------------------------------------------------------------------------
@settings(max_examples=15)
@given(n=st.integers(1, 60), shard_rows=st.integers(1, 17), dtype=st.sampled_from(["float16", "float32"]), rnd=st.randoms(use_true_random=False))
def test_sharded_store_reads_what_was_written(n: int, shard_rows: int, dtype: str, rnd: object, tmp_path_factory: pytest.TempPathFactory) -> None:
    path = tmp_path_factory.mktemp("store")
    maps = torch.randn(n, 3, 2, 2) * 10
    w = ShardedStoreWriter(path / "s", n, (3, 2, 2), dtype=dtype, shard_rows=shard_rows)  # type: ignore[arg-type]
    starts = list(range(0, n, 5))
    rnd.shuffle(starts)  # type: ignore[attr-defined]
    for s in starts:  # rows arrive in any order
        w.write(s, maps[s:s + 5])
    store = w.finalize()
    want = maps.to(torch.float16).float() if dtype == "float16" else maps
    pos = torch.tensor([rnd.randrange(n) for _ in range(2 * n)])  # type: ignore[attr-defined]
    assert torch.equal(store.get(pos), want[pos])
    assert len(store) == n and store.map_shape == (3, 2, 2)
    assert len(list((path / "s").glob("shard-*.npy"))) == -(-n // shard_rows)


@settings(max_examples=10)
@given(n=st.integers(1, 40), shard_rows=st.integers(1, 13), dtype=st.sampled_from(["float16", "float32"]), rnd=st.randoms(use_true_random=False))
def test_sharded_store_in_the_cells_layout(n: int, shard_rows: int, dtype: str, rnd: object, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Cells are CellMaps.from_maps of what was written (unit cells in the store's dtype, norms and means
    float32); `get` gives the maps back."""
    path = tmp_path_factory.mktemp("cells")
    maps = torch.randn(n, 5, 2, 3) * 30
    maps[0, :, 0, 0] = 0  # a zero cell stays zero
    w = ShardedStoreWriter(path / "s", n, (5, 2, 3), dtype=dtype, shard_rows=shard_rows, layout="cells")  # type: ignore[arg-type]
    for s0 in range(0, n, 4):
        w.write(s0, maps[s0:s0 + 4])
    store = ShardedStore.open(w.finalize().path)
    assert store.layout == "cells" and len(store) == n
    pos = torch.tensor([rnd.randrange(n) for _ in range(2 * n)])  # type: ignore[attr-defined]
    ref = xc.CellMaps.from_maps(maps[pos])
    got = store.get_cells(pos)
    half = dtype == "float16"
    assert torch.equal(got.unit, ref.unit.half().float() if half else ref.unit)
    assert torch.equal(got.norms, ref.norms) and torch.equal(got.mean, ref.mean) and got.grid == (2, 3)
    torch.testing.assert_close(store.get(pos), maps[pos], rtol=1e-3 if half else 1e-6, atol=1e-3 if half else 1e-5)


def test_index_build_without_pyarrow_writes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 27 item 6: `xcorr index build` without pyarrow left an empty --out folder behind."""
    import sys

    from xcorr_core.cli import main

    spec = tmp_path / "job.yaml"
    spec.write_text(json.dumps(SMALL))
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # import pyarrow now raises ImportError
    assert main(["index", "build", str(spec), "--out", str(tmp_path / "G"), "--no-progress"]) == 2
    assert not (tmp_path / "G").exists()


def test_edited_descriptions_are_refused(tmp_path: Path) -> None:
    """Issue 27 item 6: a hand-edited shard_rows in store.json raised IndexError; descriptions carry their own checksum."""
    w = ShardedStoreWriter(tmp_path / "s", 12, (4, 2, 2), shard_rows=5)
    w.write(0, torch.randn(12, 4, 2, 2))
    w.finalize()
    meta_path = tmp_path / "s" / "store.json"
    meta = json.loads(meta_path.read_text())
    assert "self_sha256" in meta
    meta_path.write_text(json.dumps(dict(meta, shard_rows=3)))
    with pytest.raises(IndexFileError, match="edited or is corrupt"):
        ShardedStore.open(tmp_path / "s")
    del meta["self_sha256"]  # a description from before seals: the structure is still checked
    meta_path.write_text(json.dumps(dict(meta, shard_rows=3)))
    with pytest.raises(IndexFileError, match="shard_rows=3 does not match"):
        ShardedStore.open(tmp_path / "s")
    meta_path.write_text(json.dumps(meta))
    assert len(ShardedStore.open(tmp_path / "s")) == 12


def test_cells_layout_side_file_is_checked(tmp_path: Path) -> None:
    maps = torch.randn(12, 4, 2, 2)
    w = ShardedStoreWriter(tmp_path / "s", 12, (4, 2, 2), shard_rows=5, layout="cells")
    w.write(0, maps)
    w.finalize()
    side = tmp_path / "s" / "shard-00001.cells.npy"
    raw = bytearray(side.read_bytes())
    raw[-3] ^= 0xFF  # a byte of row 9's mean
    side.write_bytes(bytes(raw))
    store = ShardedStore.open(tmp_path / "s")
    assert torch.equal(store.get_cells([2]).norms, xc.CellMaps.from_maps(maps[[2]]).norms)
    with pytest.raises(IndexFileError, match="row 9"):
        store.get_cells([9])
    with pytest.raises(IndexFileError, match="row 9"):
        ShardedStore.open(tmp_path / "s", verify="full")
    side.write_bytes(bytes(raw[:-40]))
    with pytest.raises(IndexFileError, match="truncated"):
        ShardedStore.open(tmp_path / "s")
    side.unlink()
    with pytest.raises(IndexFileError, match="missing"):
        ShardedStore.open(tmp_path / "s")


def _rss_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc")
def test_sharded_store_reads_do_not_load_the_store(tmp_path: Path) -> None:
    n, shape = 2400, (256, 7, 7)  # 2400 x 50 KB float32 = 120 MB
    w = ShardedStoreWriter(tmp_path / "s", n, shape, dtype="float32", shard_rows=500)
    for s in range(0, n, 200):
        w.write(s, torch.full((min(200, n - s), *shape), 1.0) * torch.arange(s, min(n, s + 200)).view(-1, 1, 1, 1))
    store = w.finalize()
    before = _rss_kb()
    for s in range(0, n, 50):  # every row, 50 at a time, as a job's queries would
        got = store.get(torch.arange(s, s + 50))
        assert float(got[7, 0, 0, 0]) == s + 7
    grew_mb = (_rss_kb() - before) / 1024
    assert grew_mb < 40, f"reading the whole 120 MB store grew the RSS by {grew_mb:.0f} MB"


def test_sharded_store_rejects_corrupt_and_truncated_files(tmp_path: Path) -> None:
    maps = torch.randn(30, 4, 3, 3)
    w = ShardedStoreWriter(tmp_path / "s", 30, (4, 3, 3), shard_rows=10)
    w.write(0, maps)
    w.finalize()
    shard = tmp_path / "s" / "shard-00001.npy"
    raw = bytearray(shard.read_bytes())
    raw[-5] ^= 0xFF  # flip a byte of row 19
    shard.write_bytes(bytes(raw))
    store = ShardedStore.open(tmp_path / "s")
    assert torch.equal(store.get([3, 25]), maps[[3, 25]].half().float())  # other rows still read
    with pytest.raises(IndexFileError, match="row 19"):
        store.get([12, 19])
    with pytest.raises(IndexFileError, match="row 19"):
        ShardedStore.open(tmp_path / "s", verify="full")
    shard.write_bytes(bytes(raw[:-100]))  # truncated
    with pytest.raises(IndexFileError, match="truncated"):
        ShardedStore.open(tmp_path / "s")
    (tmp_path / "s" / "crc32.npy").write_bytes(b"junk")
    with pytest.raises(IndexFileError, match="crc32"):
        ShardedStore.open(tmp_path / "s")
    with pytest.raises(IndexFileError):
        ShardedStore.open(tmp_path / "nothing")


def test_sharded_store_writer_errors(tmp_path: Path) -> None:
    w = ShardedStoreWriter(tmp_path / "s", 4, (1, 1, 1))
    with pytest.raises(InputError):
        w.write(3, torch.zeros(2, 1, 1, 1))
    with pytest.raises(InputError, match="float16"):
        w.write(0, torch.full((1, 1, 1, 1), 1e6))
    w.write(0, torch.zeros(2, 1, 1, 1))
    with pytest.raises(InputError, match="never written"):
        w.finalize()
    w.abort()
    assert not list((tmp_path / "s").glob("*.tmp"))


# -- index kinds ------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["flat", "hnsw", "ivf_flat", "ivf_pq"])
def test_every_index_kind_round_trips_through_its_file(kind: str, tmp_path: Path) -> None:
    g = torch.Generator().manual_seed(0)
    centres = torch.randn(20, 32, generator=g) * 4
    x = centres[torch.arange(2000) % 20] + torch.randn(2000, 32, generator=g)
    ix = GalleryIndex.build(x, torch.arange(2000) % 20, kind=kind, nlist=16, nprobe=16, pq_m=8, train_size=1000)  # type: ignore[arg-type]
    q = x[:64] + 0.01 * torch.randn(64, 32, generator=g)
    r = ix.search(q, 10)
    ix.save(tmp_path / "g.index")
    r2 = GalleryIndex.load(tmp_path / "g.index").search(q, 10)
    assert torch.equal(r.ids, r2.ids) and torch.allclose(r.scores, r2.scores)
    exact = GalleryIndex.build(x).search(q, 10)
    recall = np.mean([len(set(a.tolist()) & set(b.tolist())) / 10 for a, b in zip(r.ids, exact.ids)])
    assert recall >= {"flat": 1.0, "ivf_pq": 0.25}.get(kind, 0.8)  # 8-byte PQ codes of 32-d vectors: coarse
    raw = bytearray((tmp_path / "g.index").read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    (tmp_path / "g.index").write_bytes(bytes(raw))
    with pytest.raises(IndexFileError):
        GalleryIndex.load(tmp_path / "g.index")


@pytest.mark.parametrize("metric", ["cosine", "l2", "ip"])
def test_refine_rescoring_is_exact_on_the_shortlist(tmp_path: Path, metric: str) -> None:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(3000, 32, generator=g)
    np.save(tmp_path / "v.npy", x.numpy())
    q = torch.randn(20, 32, generator=g)
    ix = GalleryIndex.build(x, kind="ivf_pq", nlist=16, nprobe=16, pq_m=8, refine=3000 // 10, metric=metric)  # shortlist = all
    exact = GalleryIndex.build(x, metric=metric).search(q, 10)
    r = ix.search(q, 10)
    assert torch.equal(r.positions, exact.positions) and torch.allclose(r.scores, exact.scores, rtol=1e-5, atol=1e-4)
    ix.save(tmp_path / "i.index")
    back = GalleryIndex.load(tmp_path / "i.index")
    with pytest.raises(InputError, match="attach_vectors"):
        back.search(q, 10)
    back.attach_vectors(np.load(tmp_path / "v.npy", mmap_mode="r"))  # from disk, as a job's gallery does
    assert torch.equal(back.search(q, 10).positions, exact.positions)
    back.attach_vectors(x.t().contiguous().t())  # not faiss-readable: the torch path, same answer
    got = back.search(q, 10)
    assert torch.equal(got.positions, exact.positions) and torch.allclose(got.scores, exact.scores, rtol=1e-5, atol=1e-4)
    if metric == "cosine":  # rows whose squares overflow float32 in faiss: the scaled torch path
        back.attach_vectors((x * 1e20).numpy())
        got = back.search(q, 10)
        assert torch.equal(got.positions, exact.positions) and torch.allclose(got.scores, exact.scores, rtol=1e-5, atol=1e-4)
    back.attach_vectors(x.half())  # float16 rows: near-ties may swap, scores within float16 rounding
    got = back.search(q, 10)
    assert torch.allclose(got.scores, exact.scores, rtol=2e-3, atol=2e-3)
    assert sum(len(set(a.tolist()) & set(b.tolist())) for a, b in zip(got.positions, exact.positions)) >= 0.95 * exact.positions.numel()
    with pytest.raises(InputError):
        back.attach_vectors(np.zeros((5, 32), np.float32))


def test_ivf_index_errors() -> None:
    with pytest.raises(InputError, match="divide"):
        GalleryIndex(30, kind="ivf_pq", pq_m=8)
    ix = GalleryIndex(8, kind="ivf_flat")
    with pytest.raises(InputError, match="trained"):
        ix.add(torch.randn(5, 8))
    with pytest.raises(InputError, match="sample"):
        ix.train(torch.randn(10, 8))


# -- local jobs -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def local_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("job") / "A"
    xc.register_plugin(_PLUGIN, name="test_jobs_plugin")
    run_job(small_job(), out, progress=False)
    return out


def test_local_job_equals_the_in_memory_pipeline(local_run: Path) -> None:
    from xcorr_core.pipeline import Pipeline

    job = small_job()
    pipe = Pipeline(job.pipeline).fit(load_source(job.gallery))
    res = pipe.run(load_source(job.data))
    t = read_results(local_run)
    assert t["query_id"].to_pylist() == list(range(48))
    for m in ("knn", "test_patchmax"):
        assert t[f"{m}_prediction"].to_pylist() == res.methods[m].predictions.tolist()
        assert t[f"{m}_ids"].to_pylist() == res.methods[m].neighbour_ids.tolist()
        assert np.allclose(t[f"{m}_confidence"].to_numpy(), res.methods[m].confidences.numpy())
        acc = float((res.methods[m].predictions == res.methods[m].targets).float().mean())
        assert json.loads((local_run / "summary.json").read_text())[m]["top1_accuracy"] == pytest.approx(acc)
    pairs, weights = t["test_patchmax_pairs"].to_pylist()[0], t["test_patchmax_weights"].to_pylist()[0]
    ranking = pipe.cases(load_source(job.data), [0], method="test_patchmax")[0].ranking
    top = ranking.order[:10]
    assert pairs == ranking.pairs[top].tolist() and np.allclose(weights, ranking.weights[top].numpy())
    assert len(t["shortlist_ids"].to_pylist()[0]) == 30


def test_a_job_whose_rerankers_read_cells_stores_cells(tmp_path: Path) -> None:
    """A re-ranker with rerank_cells_many: the gallery keeps the cells layout and the job's table equals
    the same job on the maps layout and the in-memory pipeline."""
    from xcorr_core.pipeline import Pipeline

    spec = {**SMALL, "data": {"kind": "synthbirds", "split": "test", "per_class": 1}, "store": {"shard_rows": 40, "dtype": "float32"}}
    spec["pipeline"] = {**SMALL["pipeline"], "rerankers": [{"name": "test_patchmax_cells"}], "explainers": []}  # type: ignore[dict-item]
    cells_job = JobSpec.parse(spec)
    maps_job = JobSpec.parse({**spec, "pipeline": {**spec["pipeline"], "maps": {"layout": "maps"}}})  # type: ignore[dict-item]
    run_job(cells_job, tmp_path / "cells", progress=False)
    run_job(maps_job, tmp_path / "maps", progress=False)
    infos = {k: json.loads(next((tmp_path / k).rglob("gallery.json")).read_text()) for k in ("cells", "maps")}
    assert infos["cells"]["store_layout"] == "cells" and infos["maps"]["store_layout"] == "maps"
    a, b = read_results(tmp_path / "cells"), read_results(tmp_path / "maps")
    pipe = Pipeline(cells_job.pipeline).fit(load_source(cells_job.gallery))
    res = pipe.run(load_source(cells_job.data))
    m = "test_patchmax_cells"
    assert a[f"{m}_prediction"].to_pylist() == b[f"{m}_prediction"].to_pylist() == res.methods[m].predictions.tolist()
    assert a[f"{m}_ids"].to_pylist() == b[f"{m}_ids"].to_pylist() == res.methods[m].neighbour_ids.tolist()
    assert np.allclose(np.array(a[f"{m}_scores"].to_pylist()), np.array(b[f"{m}_scores"].to_pylist()), rtol=1e-5, atol=1e-6)
    assert a[f"{m}_pairs"].to_pylist() == b[f"{m}_pairs"].to_pylist()


def test_table_loads_with_pandas_and_duckdb_and_explanations_load(local_run: Path) -> None:
    import duckdb
    import pandas as pd

    from xcorr_core.jobs import load_explanations

    df = pd.read_parquet(local_run / "parts")
    assert len(df) == 48 and set(df.query_id) == set(range(48))
    n, acc = duckdb.sql(f"select count(*), avg((knn_prediction = label)::int) from '{local_run}/parts/*.parquet'").fetchall()[0]
    assert n == 48 and acc == pytest.approx(float((df.knn_prediction == df.label).mean()))
    rel = df.sort_values("query_id").knn_explanations.iloc[0]
    (exp,) = load_explanations(local_run / rel)
    assert type(exp).__name__ != "Explanation" and exp.method == "nearest_neighbours"


def test_resume_after_a_job_stopped_half_way_gives_the_same_table(local_run: Path, tmp_path: Path) -> None:
    job = small_job()
    data = load_source(job.data)

    class Stops(torch.utils.data.Dataset):  # Ctrl-C while the third batch is read
        labels = data.labels

        def __len__(self) -> int:
            return len(data)

        def __getitem__(self, i: int) -> object:
            if i == 35:
                raise KeyboardInterrupt
            return data[i]

    with pytest.raises(KeyboardInterrupt):
        run_job(job, tmp_path / "B", data=Stops(), progress=False)
    manifest = json.loads((tmp_path / "B" / "manifest.json").read_text())
    assert manifest["done"] == 32 and manifest["status"] == "running"
    # a part written just before a crash, not yet in the manifest: dropped on resume, its queries run again
    orphan = tmp_path / "B" / "parts" / "part-000099.parquet"
    orphan.write_bytes((tmp_path / "B" / manifest["parts"][0]["file"]).read_bytes())
    with pytest.raises(ConfigError, match="--resume"):
        run_job(job, tmp_path / "B", progress=False)
    rep = run_job(job, tmp_path / "B", resume=True, progress=False)
    assert rep.ran == 16 and rep.done == 48 and not orphan.exists()
    a, b = read_results(local_run), read_results(tmp_path / "B")
    assert a.column_names == b.column_names
    for c in a.column_names:
        if c.endswith("_scores") or c.endswith("_weights"):
            assert np.allclose(np.array(a[c].to_pylist(), dtype=float), np.array(b[c].to_pylist(), dtype=float), atol=1e-5), c
        else:
            assert a[c].to_pylist() == b[c].to_pylist(), c
    with pytest.raises(ConfigError, match="different job"):
        run_job(small_job(batch_size=8, explain="none"), tmp_path / "B", resume=True, progress=False)


def test_a_batch_that_raises_once_costs_a_retry(local_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    marker = tmp_path / "fail"
    marker.write_text("16")
    monkeypatch.setenv("XCORR_JOB_FAIL_ONCE", str(marker))
    rep = run_job(small_job(), tmp_path / "C", progress=False, gallery_dir=local_run / "gallery")
    assert not marker.exists() and rep.errors == 0
    assert read_results(tmp_path / "C")["query_id"].to_pylist() == list(range(48))


def _image_folder(root: Path, broken: str | None = None) -> Path:
    from PIL import Image

    birds = load_source({"kind": "synthbirds", "split": "train", "per_class": 3})
    for i in range(len(birds)):
        img, label = birds[i]
        d = root / f"c{label:02d}"
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray((img.permute(1, 2, 0).numpy() * 255).astype(np.uint8)).save(d / f"{i:04d}.png")
    if broken:
        (root / "c00" / broken).write_bytes(b"not a png")
    return root


def test_unreadable_images_go_to_the_errors_table_and_the_job_finishes(tmp_path: Path) -> None:
    folder = _image_folder(tmp_path / "imgs", broken="0000.png")
    job = JobSpec.parse({"data": f"imagefolder:{folder}", "gallery": "synthbirds:train", "batch_size": 8, "explain": "none",
                         "pipeline": {"rerankers": [{"name": "test_patchmax"}], "shortlist": 20, "decision": {"k": 5}}})
    job.data.size = 112  # type: ignore[union-attr]
    rep = run_job(job, tmp_path / "D", progress=False)
    errs = read_errors(tmp_path / "D")
    assert rep.errors == 1 and errs["path"].to_pylist() == [str(folder / "c00" / "0000.png")]
    assert "cannot read image" in errs["error"].to_pylist()[0] and errs["error_type"].to_pylist() == ["InputError"]
    t = read_results(tmp_path / "D")
    assert t.num_rows == 71 and 0 not in t["query_id"].to_pylist()
    assert json.loads((tmp_path / "D" / "manifest.json").read_text())["status"] == "done"


def test_job_spec_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="batch_size"):
        JobSpec.parse({**SMALL, "batch_size": 0})
    with pytest.raises(ConfigError, match="unknown data source"):
        JobSpec.parse({**SMALL, "data": "mnist:test"})
    with pytest.raises(ConfigError, match="no query data"):
        run_job(JobSpec(), tmp_path / "x")
    with pytest.raises(ConfigError, match="executor"):
        run_job(small_job(), tmp_path / "y", executor="dask")


def test_cli_run_and_index_commands(local_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from xcorr_core.cli import main

    spec = tmp_path / "job.yaml"
    spec.write_text(json.dumps({**SMALL, "explain": "none"}))
    assert main(["run", str(spec), "--out", str(tmp_path / "E"), "--gallery-dir", str(local_run / "gallery"), "--no-progress"]) == 0
    assert "48 of 48 queries" in capsys.readouterr().out
    assert read_results(tmp_path / "E")["test_patchmax_prediction"].to_pylist() == read_results(local_run)["test_patchmax_prediction"].to_pylist()
    assert main(["run", str(spec), "--out", str(tmp_path / "E"), "--no-progress"]) == 2  # exists, no --resume
    assert main(["index", "eval", str(local_run / "gallery"), "-k", "10", "--queries", "20", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows[0]["kind"] == "flat" and rows[0]["recall"] == 1.0
    spec2 = tmp_path / "job2.yaml"
    spec2.write_text(json.dumps({**SMALL, "pipeline": {**SMALL["pipeline"], "index": {"kind": "hnsw", "ef_search": 16}}}))  # type: ignore[dict-item]
    assert main(["index", "build", str(spec2), "--out", str(tmp_path / "G"), "--no-progress"]) == 0
    assert main(["index", "eval", str(tmp_path / "G"), "-k", "10", "--queries", "50", "--ef-search", "16,64"]) == 0
    out = capsys.readouterr().out
    assert "hnsw" in out and "ef_search=64" in out
    meta = json.loads((tmp_path / "G" / "gallery.json").read_text())
    assert meta["n"] == 144 and meta["map_shape"] == [256, 7, 7]
    (tmp_path / "G" / "gallery.json").write_text(json.dumps(dict(meta, num_classes=99)))  # an edited field
    with pytest.raises(IndexFileError, match="edited or is corrupt"):
        open_gallery(tmp_path / "G")
    (tmp_path / "G" / "gallery.json").write_text(json.dumps(meta))
    (tmp_path / "G" / "gallery.index").write_bytes(b"x")
    assert main(["index", "eval", str(tmp_path / "G")]) == 2
    # IVF-PQ re-scoring from the gallery's vectors.npy: a shortlist of 10 x 27 >= 264 rows is exact (PQ trains on >= 256)
    spec3 = tmp_path / "job3.yaml"
    spec3.write_text(json.dumps({**SMALL, "gallery": {**SMALL["gallery"], "per_class": 11},  # type: ignore[dict-item]
                                 "pipeline": {**SMALL["pipeline"], "index": {"kind": "ivf_pq", "nlist": 2, "nprobe": 2, "pq_m": 8, "refine": 27}}}))  # type: ignore[dict-item]
    assert main(["index", "build", str(spec3), "--out", str(tmp_path / "P"), "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["index", "eval", str(tmp_path / "P"), "-k", "10", "--queries", "40", "--refine", "1,27", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["refine"] for r in rows] == [1, 27] and rows[1]["recall"] == 1.0 and rows[0]["recall"] <= 1.0
    assert main(["index", "eval", str(tmp_path / "P"), "--refine", "two"]) == 2
    (tmp_path / "P" / "vectors.npy").unlink()
    with pytest.raises(IndexFileError, match="vectors.npy"):
        open_gallery(tmp_path / "P", need_store=False)


def test_store_dtype_is_one_setting_with_the_pipelines_maps_dtype() -> None:
    """issue 28: a job's store.dtype and its pipeline's maps.dtype are one setting, not two."""
    from xcorr_core.jobs import JobSpec

    assert JobSpec().store_dtype == "float16"
    assert JobSpec(pipeline={"maps": {"dtype": "float32"}}).store_dtype == "float32"  # the pipeline's, no longer ignored
    job = JobSpec(store={"dtype": "float32"})
    assert job.store_dtype == job.pipeline.maps.dtype == "float32"
    with pytest.raises(ConfigError, match="store.dtype float32 contradicts pipeline.maps.dtype float16"):
        JobSpec.parse({"pipeline": {"maps": {"dtype": "float16"}}, "store": {"dtype": "float32"}})
