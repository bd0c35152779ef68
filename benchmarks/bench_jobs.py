"""Scale-out figures (issue 14), each beside its baseline from the same run.

    python benchmarks/bench_jobs.py [throughput] [indexes] [rss]   (default: all three)

throughput: queries/s of the EMD-Corr job (examples/synthbirds_job.yaml's pipeline) over SynthBirds
            test images on disk (an image folder, as real data would be), gallery built once:
            local executor vs Ray with 1 and with 2 workers.
indexes:    Flat vs IVF-Flat / IVF-PQ / HNSW on clustered vectors (default 200k x 2048): build
            seconds, bytes, ms/query and recall@50 for several nprobe / ef_search settings.
rss:        peak RSS of a local job whose gallery store is larger than 4 GB (a child process; VmHWM).

Prints one JSON object per section.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]


def _image_folder(root: Path, per_class: int) -> Path:
    from PIL import Image

    from xcorr_core.sources import load_source

    if (root / "done").exists():
        return root
    birds = load_source({"kind": "synthbirds", "split": "test", "per_class": per_class})
    for i in range(len(birds)):
        img, label = birds[i]
        d = root / f"c{label:02d}"
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray((img.permute(1, 2, 0).numpy() * 255).astype(np.uint8)).save(d / f"{i:05d}.png")
    (root / "done").write_text("")
    return root


def throughput(work: Path) -> dict:
    from xcorr_core.jobs import JobSpec, build_gallery, read_results, run_job
    from xcorr_core.jobs.executors import LocalExecutor

    folder = _image_folder(work / "queries_100", per_class=100)  # 2400 query images
    spec = JobSpec.from_file(ROOT / "examples" / "synthbirds_job.yaml")
    job = spec.model_copy(update={"data": spec.data.model_copy(update={"kind": "imagefolder", "root": str(folder), "size": 112}),  # type: ignore[union-attr]
                                  "explain": "none", "batch_size": int(os.environ.get("XCORR_BENCH_BATCH", "128"))})
    gdir = work / "gallery"
    build_gallery(job, gdir, LocalExecutor(), progress=False)
    out: dict = {"queries": 0, "batch_size": job.batch_size}
    preds = {}
    for name, kw in (("local", {}), ("ray_1", {"executor": "ray", "workers": 1}), ("ray_2", {"executor": "ray", "workers": 2})):
        t = time.perf_counter()
        rep = run_job(job, work / name, gallery_dir=gdir, progress=False, **kw)  # type: ignore[arg-type]
        wall = time.perf_counter() - t
        out["queries"] = rep.ran
        out[name] = {"queries_per_s": round(rep.queries_per_s, 2), "steady_queries_per_s": round(rep.steady_queries_per_s or 0, 2),
                     "query_stage_s": round(rep.seconds, 2), "wall_s_incl_ray_start": round(wall, 2)}
        preds[name] = read_results(work / name)["emd_corr_prediction"].to_pylist()
    for rate in ("queries_per_s", "steady_queries_per_s"):
        out[f"ray_1_overhead_vs_local ({rate})"] = round(out["local"][rate] / out["ray_1"][rate] - 1, 3)
        out[f"ray_2_speedup_vs_ray_1 ({rate})"] = round(out["ray_2"][rate] / out["ray_1"][rate], 3)
    out["same_predictions"] = preds["local"] == preds["ray_1"] == preds["ray_2"]
    # the same local job on a gallery whose store keeps maps (EMD-Corr then transposes and normalises per call)
    maps_job = job.model_copy(update={"pipeline": job.pipeline.model_copy(update={"maps": job.pipeline.maps.model_copy(update={"layout": "maps"})})})
    gmaps = work / "gallery_maps"
    build_gallery(maps_job, gmaps, LocalExecutor(), progress=False)
    rep = run_job(maps_job, work / "local_maps", gallery_dir=gmaps, progress=False)
    out["local_maps_layout"] = {"queries_per_s": round(rep.queries_per_s, 2), "steady_queries_per_s": round(rep.steady_queries_per_s or 0, 2)}
    out["store_layout"] = json.loads((gdir / "gallery.json").read_text()).get("store_layout")
    out["cells_vs_maps_layout (steady)"] = round(out["local"]["steady_queries_per_s"] / out["local_maps_layout"]["steady_queries_per_s"], 3)
    out["same_predictions_maps_layout"] = read_results(work / "local_maps")["emd_corr_prediction"].to_pylist() == preds["local"]
    return out


def indexes(n: int = 200_000, dim: int = 2048, queries: int = 500, k: int = 50) -> dict:
    from xcorr_core.index import GalleryIndex

    g = torch.Generator().manual_seed(0)
    centres = torch.randn(2000, dim, generator=g)
    x = torch.empty(n, dim)
    for s in range(0, n, 20000):
        idx = torch.randint(0, 2000, (min(20000, n - s),), generator=g)
        x[s:s + idx.numel()] = centres[idx] + 0.6 * torch.randn(idx.numel(), dim, generator=g)
    q = centres[torch.randint(0, 2000, (queries,), generator=g)] + 0.6 * torch.randn(queries, dim, generator=g)
    res: dict = {"n": n, "dim": dim, "queries": queries, "k": k, "clusters": 2000}
    t = time.perf_counter()
    flat = GalleryIndex.build(x)
    res["flat"] = {"build_s": round(time.perf_counter() - t, 2), "bytes": flat.nbytes()}
    t = time.perf_counter()
    truth = flat.search(q, k).positions
    flat_ms = 1000 * (time.perf_counter() - t) / queries
    res["flat"]["ms_per_query"] = round(flat_ms, 3)

    def curve(ix: GalleryIndex, settings: list[dict[str, int]]) -> list[dict]:
        rows = []
        for st in settings:
            ix.set_search_params(**st)
            t0 = time.perf_counter()
            got = ix.search(q, k).positions
            ms = 1000 * (time.perf_counter() - t0) / queries
            recall = float(np.mean([len(set(a.tolist()) & set(b.tolist())) / k for a, b in zip(got, truth)]))
            rows.append({**st, "recall_at_50": round(recall, 4), "ms_per_query": round(ms, 3), "speedup_vs_flat": round(flat_ms / ms, 1)})
        return rows

    grid = [{"nprobe": p, "refine": r} for p in (4, 8, 16) for r in (1, 2, 3, 4)]
    efs = [{"ef_search": e} for e in (32, 64, 128)]
    for kind, params, settings in (("ivf_flat", {"nlist": 1024}, [{"nprobe": p} for p in (4, 8, 16, 32)]),
                                   ("ivf_pq", {"nlist": 1024, "pq_m": 64, "refine": 4}, grid),
                                   ("hnsw", {"hnsw_m": 16, "ef_construction": 80}, efs),
                                   ("hnsw", {"hnsw_m": 32, "ef_construction": 40}, efs)):
        t = time.perf_counter()
        ix = GalleryIndex.build(x, kind=kind, train_size=60_000, **params)  # type: ignore[arg-type]
        key = kind if kind != "hnsw" else f"hnsw_m{params['hnsw_m']}_efc{params['ef_construction']}"
        # IVF-PQ bytes: the codes, ids and centroids in RAM; its refine reads the vectors from disk (vectors.npy)
        res[key] = {"build_s": round(time.perf_counter() - t, 2), "bytes": ix.nbytes(), **params, "curve": curve(ix, settings)}
        print(json.dumps({key: res[key]}), file=sys.stderr, flush=True)
        del ix
    return res


_RSS_CHILD = r"""
import json, sys, threading, time, traceback
from pathlib import Path

peak = [0, ""]  # kB, where the main thread was when resident memory peaked


def rss_kb():
    return int([l for l in Path('/proc/self/status').read_text().splitlines() if l.startswith('VmRSS')][0].split()[1])


def watch():
    main = threading.main_thread()
    while True:
        r = rss_kb()
        if r > peak[0]:
            fr = sys._current_frames().get(main.ident)
            st = traceback.extract_stack(fr)[-5:] if fr else []
            peak[0], peak[1] = r, " <- ".join(f"{Path(f.filename).name}:{f.lineno}" for f in reversed(st))
        time.sleep(0.01)


threading.Thread(target=watch, daemon=True).start()
from xcorr_core.jobs import JobSpec, run_job
job = JobSpec.model_validate_json(Path(sys.argv[1]).read_text())
rep = run_job(job, sys.argv[2], gallery_dir=sys.argv[3], progress=False)
hwm = [l for l in Path('/proc/self/status').read_text().splitlines() if l.startswith('VmHWM')][0].split()[1]
print(json.dumps({"peak_rss_mb": round(int(hwm) / 1024, 1), "peak_at": peak[1], "queries": rep.ran, "queries_per_s": rep.queries_per_s}))
"""


def rss(work: Path, store_gb: float = 4.3) -> dict:
    """A gallery of random maps (256 x 7 x 7, float16: 25 KB each) larger than 4 GB, random labels;
    the job's queries re-rank against candidates spread over the whole store."""
    import hashlib

    from xcorr_core.index import GalleryIndex
    from xcorr_core.jobs import JobSpec
    from xcorr_core.jobs.gallery import GALLERY_FORMAT, _sha256
    from xcorr_core.shards import ShardedStoreWriter

    gdir = work / "big_gallery"
    row = 256 * 49 * 2
    n = int(store_gb * 1e9 / row) + 1
    if not (gdir / "gallery.json").exists():
        g = torch.Generator().manual_seed(0)
        w = ShardedStoreWriter(gdir / "store", n, (256, 7, 7), shard_rows=16384, layer="layer4")
        for s in range(0, n, 4096):
            b = min(4096, n - s)
            w.write(s, torch.rand(b, 256, 7, 7, generator=g) * 3)
        store = w.finalize()
        vecs = torch.rand(n, 256, generator=g)
        np.save(gdir / "vectors.npy", vecs.numpy())
        labels = torch.randint(0, 24, (n,), generator=g)
        ix = GalleryIndex.build(vecs, labels)
        ix.save(gdir / "gallery.index")
        info = {"format": GALLERY_FORMAT, "fingerprint": hashlib.sha256(b"bench").hexdigest()[:16], "source": "random", "n": n,
                "num_classes": 24, "dim": 256, "index": {"kind": "flat"}, "map_shape": [256, 7, 7], "store_dtype": "float16",
                "vectors_sha256": _sha256(gdir / "vectors.npy"), "index_sha256": _sha256(gdir / "gallery.index"),
                "bytes": {"store": store.nbytes}}
        (gdir / "gallery.json").write_text(json.dumps(info))
    store_bytes = json.loads((gdir / "gallery.json").read_text())["bytes"]["store"]
    folder = _image_folder(work / "queries", per_class=20)
    spec = JobSpec.from_file(ROOT / "examples" / "synthbirds_job.yaml")
    job = spec.model_copy(update={"data": spec.data.model_copy(update={"kind": "imagefolder", "root": str(folder), "size": 112}),  # type: ignore[union-attr]
                                  "explain": "none"})
    (work / "job.json").write_text(job.model_dump_json(by_alias=True))
    import shutil

    shutil.rmtree(work / "rss_out", ignore_errors=True)
    proc = subprocess.run([sys.executable, "-c", _RSS_CHILD, str(work / "job.json"), str(work / "rss_out"), str(gdir)],
                          capture_output=True, text=True, check=True)
    child = json.loads(proc.stdout.strip().splitlines()[-1])
    return {"store_gb": round(store_bytes / 1e9, 2), "gallery_rows": n, **child, "limit_mb": 2048}


def stages(work: Path) -> dict:
    import torchvision

    from xcorr_core import registry
    from xcorr_core.index import GalleryIndex
    from xcorr_core.shards import ShardedStoreWriter

    out: dict = {}
    model = torchvision.models.resnet50(weights=None).eval()
    x = torch.rand(16, 3, 224, 224)
    with torch.no_grad():
        model(x[:2])
        t = time.perf_counter()
        model(x)
    out["resnet50_forward_s_per_image"] = round((time.perf_counter() - t) / 16, 4)
    g = torch.Generator().manual_seed(0)
    vecs = torch.randn(200_000, 2048, generator=g)
    flat = GalleryIndex.build(vecs)
    q = torch.randn(64, 2048, generator=g)
    t = time.perf_counter()
    flat.search(q, 50)
    ms = 1000 * (time.perf_counter() - t) / 64
    del flat, vecs
    out["flat_search_ms_200k"] = round(ms, 2)
    out["flat_search_ms_1_28M_projected"] = round(ms * 6.4, 1)
    n = 8000  # 1.6 GB store of 2048 x 7 x 7 float16 maps
    w = ShardedStoreWriter(work / "stage_store", n, (2048, 7, 7), shard_rows=2000)
    for s0 in range(0, n, 500):
        w.write(s0, torch.rand(500, 2048, 7, 7, generator=g))
    store = w.finalize()
    pos = [torch.randint(0, n, (50,), generator=g) for _ in range(20)]
    t = time.perf_counter()
    cands = [store.get(p) for p in pos]
    out["store_read_50_ms (page cache warm after the write)"] = round(1000 * (time.perf_counter() - t) / 20, 2)
    emd = registry.create("reranker", "emd_corr")
    qmap = torch.rand(2048, 7, 7, generator=g)
    emd.rerank(qmap, cands[0])
    t = time.perf_counter()
    for c in cands[:10]:
        emd.rerank(qmap, c)
    out["emd_corr_rerank_50_ms"] = round(1000 * (time.perf_counter() - t) / 10, 2)
    return out


def main() -> None:
    which = sys.argv[1:] or ["throughput", "indexes", "rss", "stages"]
    work = Path(os.environ.get("XCORR_BENCH_DIR") or tempfile.mkdtemp(prefix="xcorr-bench-jobs-"))
    work.mkdir(parents=True, exist_ok=True)
    for w in which:
        for d in ("local", "ray_1", "ray_2", "local_maps"):
            if w == "throughput":
                import shutil

                shutil.rmtree(work / d, ignore_errors=True)
        result = {"throughput": lambda: throughput(work), "indexes": indexes, "rss": lambda: rss(work), "stages": lambda: stages(work)}[w]()
        print(json.dumps({w: result}, indent=1), flush=True)


if __name__ == "__main__":
    main()
