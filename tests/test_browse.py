"""The browser site's builder: its data files equal the job's Parquet rows, its summaries equal
counts made here from the table, it is self-contained, it refuses to overwrite a foreign folder,
its figures and its server work. (The page itself is tested in Chromium: test_browse_page.py.)"""
from __future__ import annotations

import json
import math
import re
import threading
import urllib.request
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import numpy as np  # noqa: E402
import pytest  # noqa: E402

pa = pytest.importorskip("pyarrow")

from xcorr_core.browse import build_site, make_server, read_chunk  # noqa: E402
from xcorr_core.browse.media import render_figures  # noqa: E402
from xcorr_core.browse.rows import true_rank  # noqa: E402
from xcorr_core.errors import ConfigError, InputError  # noqa: E402
from xcorr_core.jobs import read_results  # noqa: E402
from xcorr_core.jobs.gallery_files import open_gallery  # noqa: E402
from xcorr_core.jobs.table import dump_explanations  # noqa: E402
from xcorr_core.results import Explanation  # noqa: E402
from xcorr_core.sources import load_source  # noqa: E402
from xcorr_core.stats import wilson_interval  # noqa: E402


def _chunks(site: Path, kind: str) -> list:
    out = []
    files = sorted((site / "data").glob(f"{kind}-*.js"))
    for n, f in enumerate(files):
        k, i, payload = read_chunk(f)
        assert (k, i) == (kind, n)
        out.append(payload)
    return out


def _meta(site: Path) -> dict:
    text = (site / "data" / "meta.js").read_text()
    return json.loads(text[text.index("=") + 1:].strip().rstrip(";"))


def _f32(values: list) -> list:
    return [float(np.float32(v)) for v in values]


def test_rows_equal_the_parquet_table(browse_job) -> None:
    job, site, report = browse_job
    t = read_results(job).to_pydict()
    labels = open_gallery(job / "gallery", need_store=False)[0].labels.numpy()
    chunks = _chunks(site, "rows")
    assert len(chunks) == report.chunks == 3  # 48 queries in files of 16
    rows = {k: [v for c in chunks for v in c[k]] for k in chunks[0]}
    assert rows["id"] == t["query_id"] and rows["label"] == t["label"] and rows["path"] == t["path"]
    for m in ("knn", "test_patchmax"):
        assert rows[f"{m}_pred"] == t[f"{m}_prediction"]
        assert rows[f"{m}_conf"] == t[f"{m}_confidence"]
        assert rows[f"{m}__top1_accuracy"] == t[f"{m}__top1_accuracy"]
        # the rank of the true class, counted here with numpy: first position whose gallery label is the query's
        want = []
        for ids, y in zip(t[f"{m}_ids"], t["label"]):
            hit = np.flatnonzero(labels[np.asarray(ids)] == y)
            want.append(int(hit[0]) + 1 if hit.size else None)
        assert rows[f"{m}_rank"] == want
    k = len(t["knn_ids"][0])
    change = [(a or k + 1) - (b or k + 1) for a, b in zip(rows["knn_rank"], rows["test_patchmax_rank"])]
    assert rows["test_patchmax_rank_change"] == change
    assert "knn_rank_change" not in rows


def test_details_equal_the_parquet_lists(browse_job) -> None:
    job, site, _ = browse_job
    t = read_results(job).to_pydict()
    labels = open_gallery(job / "gallery", need_store=False)[0].labels.numpy()
    details = [d for c in _chunks(site, "detail") for d in c]
    assert [d["id"] for d in details] == t["query_id"]
    for r, d in enumerate(details):
        for m in ("knn", "test_patchmax"):
            assert d[m]["ids"] == t[f"{m}_ids"][r]
            assert d[m]["scores"] == _f32(t[f"{m}_scores"][r])
            assert d[m]["labels"] == [int(labels[g]) for g in t[f"{m}_ids"][r]]
        assert "pairs" not in d["knn"]
        assert d["test_patchmax"]["pairs"] == t["test_patchmax_pairs"][r]
        assert d["test_patchmax"]["weights"] == [_f32(w) for w in t["test_patchmax_weights"][r]]
        assert all(len(p) == 5 for p in d["test_patchmax"]["pairs"])


def test_summaries_equal_counts_from_the_table(browse_job) -> None:
    job, site, _ = browse_job
    t = read_results(job).to_pydict()
    meta = _meta(site)
    n = len(t["label"])
    assert meta["queries"] == n and meta["chunks"] == 3 and meta["methods"] == ["knn", "test_patchmax"]
    names = load_source("synthbirds:test").class_names
    assert meta["grid"] == [7, 7] and meta["class_names"] == names and meta["num_classes"] == len(names) == 24
    right = {m: [p == y for p, y in zip(t[f"{m}_prediction"], t["label"])] for m in meta["methods"]}
    for m, s in meta["summary"]["methods"].items():
        assert s["correct"] == sum(right[m]) and math.isclose(s["accuracy"], sum(right[m]) / n)
        assert s["ci95"] == list(wilson_interval(sum(right[m]), n))
        assert sum(c for _, _, c in s["confusion"]) == n
        assert sum(c for y, p, c in s["confusion"] if y == p) == sum(right[m])
        assert math.isclose(s["metrics"]["top1_accuracy"], np.mean(t[f"{m}__top1_accuracy"]))
    s = meta["summary"]["methods"]["test_patchmax"]
    assert s["fixes"] == sum(a and not b for a, b in zip(right["test_patchmax"], right["knn"]))
    assert s["breaks"] == sum(b and not a for a, b in zip(right["test_patchmax"], right["knn"]))


def test_site_is_self_contained_and_has_the_pictures(browse_job) -> None:
    job, site, report = browse_job
    t = read_results(job).to_pydict()
    for f in ("index.html", "browse.js", "browse.css"):
        text = (site / f).read_text()
        assert not re.search(r"(src|href)=[\"']?(https?:)?//", text), f"{f} loads something from the network"
        assert "@import" not in text and "cdn" not in text.lower()
    assert {p.stem for p in (site / "img" / "q").iterdir()} == {str(i) for i in t["query_id"]}
    shown = {g for m in ("knn", "test_patchmax") for ids in t[f"{m}_ids"] for g in ids}
    assert {int(p.stem) for p in (site / "img" / "g").iterdir()} == shown
    assert report.pictures == len(t["query_id"]) + len(shown)
    assert report.figures == 0 and report.problems == []  # neighbour explanations are drawn by the page itself


def test_a_foreign_folder_is_refused_and_a_site_is_rebuilt(browse_job, tmp_path: Path) -> None:
    job, _, _ = browse_job
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(ConfigError, match="holds no xcorr browser site"):
        build_site(job, tmp_path / "mine", progress=False)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"
    first = build_site(job, tmp_path / "s", chunk_rows=100, pictures=False, progress=False)
    assert first.chunks == 1 and first.pictures == 0 and not (tmp_path / "s" / "img").exists()
    again = build_site(job, tmp_path / "s", chunk_rows=7, pictures=False, progress=False)
    assert again.chunks == 7 and len(list((tmp_path / "s" / "data").glob("rows-*.js"))) == 7
    with pytest.raises(ConfigError, match="chunk_rows"):
        build_site(job, tmp_path / "s", chunk_rows=0)
    with pytest.raises(InputError, match="not a job folder"):
        build_site(tmp_path / "mine", tmp_path / "t")
    with pytest.raises(InputError, match="not a browser data file"):
        read_chunk(tmp_path / "mine" / "notes.txt")


def test_a_moved_data_set_costs_the_pictures_not_the_site(browse_job, tmp_path: Path) -> None:
    job, _, _ = browse_job
    manifest = json.loads((job / "manifest.json").read_text())
    moved = tmp_path / "job"
    moved.mkdir()
    manifest["spec"]["data"] = {"kind": "imagefolder", "root": str(tmp_path / "gone")}
    manifest["spec"]["gallery_dir"] = str(job / "gallery")
    (moved / "manifest.json").write_text(json.dumps(manifest))
    (moved / "parts").symlink_to(job / "parts")
    rep = build_site(moved, tmp_path / "s", progress=False)
    assert rep.queries == 48 and any("could not load the data source" in p for p in rep.problems)
    assert any("could not read 000000000.json" in p for p in rep.problems)  # explanation files did not move along
    assert not (tmp_path / "s" / "img" / "q").exists() and (tmp_path / "s" / "img" / "g").is_dir()
    assert _meta(tmp_path / "s")["pictures"] == {"query": False, "gallery": True}


class _Drawn(Explanation):
    """An explanation with a figure of its own, for the figure renderer."""

    def plot(self, images=None, ax=None, query=None, target=None):  # type: ignore[no-untyped-def]
        import matplotlib.pyplot as plt

        fig, a = plt.subplots(figsize=(2, 2))
        a.imshow(query.permute(1, 2, 0).numpy())
        a.set_title(f"class {target}")
        return fig


class _Broken(Explanation):
    def plot(self, images=None, ax=None):  # type: ignore[no-untyped-def]
        raise RuntimeError("nothing to draw")


def test_explanation_figures_are_drawn_and_failures_reported(tmp_path: Path) -> None:
    import torch

    path = tmp_path / "e.json"
    path.write_text(dump_explanations([_Drawn(method="drawn", query_id=3), _Broken(method="broken", query_id=3)]))
    figs, problems = render_figures(path, tmp_path / "site", "m-3", query=torch.rand(3, 8, 8), gallery=None, class_names=None, target=2)
    assert figs == ["fig/m-3-0.png"] and (tmp_path / "site" / figs[0]).read_bytes()[:4] == b"\x89PNG"
    assert problems == ["_Broken: RuntimeError: nothing to draw"]


def test_true_rank_by_hand() -> None:
    labels = np.array([0, 1, 1, 2])
    assert true_rank([3, 2, 1], 1, labels) == 2
    assert true_rank([3, 0], 1, labels) is None
    assert true_rank([], 1, labels) is None and true_rank(None, 0, labels) is None


def test_the_server_serves_the_site_on_loopback(browse_job) -> None:
    _, site, _ = browse_job
    server = make_server(site, 0)
    host, port = server.server_address[:2]
    assert host == "127.0.0.1"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with urllib.request.urlopen(f"http://{host}:{port}/index.html", timeout=10) as r:
            assert r.status == 200 and b"browse.js" in r.read()
        with urllib.request.urlopen(f"http://{host}:{port}/data/rows-00000.js", timeout=10) as r:
            assert r.read().startswith(b"xcorrBrowse.rows(0, ")
    finally:
        server.shutdown()
        server.server_close()


def test_cli_browse(browse_job, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from xcorr_core.cli import main

    job, _, _ = browse_job
    assert main(["browse", str(job), "--site", str(tmp_path / "s"), "--no-progress", "--no-pictures", "--chunk-rows", "25"]) == 0
    out = capsys.readouterr().out
    assert "48 queries, methods knn, test_patchmax: 2 data file(s), 0 pictures" in out
    assert f"open {(tmp_path / 's' / 'index.html').resolve().as_uri()}" in out
    assert main(["browse", str(tmp_path / "nothing"), "--no-progress"]) == 2
    assert "is not a job folder" in capsys.readouterr().err
