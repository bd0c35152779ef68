"""CHM-Corr re-ranking speed and memory (needs the chm_corr plugin installed).

    python benchmarks/bench_chm_corr.py [--repeats 3] [--skip-resnet101]

In one run:
  * the shipped small CHM (SynthBirds SmallResNet layer4, 256 x 7 x 7 maps): one query
    against N = 50 candidates, batched (all 50 pairs through CHMNet in chunks) vs the naive
    baseline, a loop over candidates running the same method one pair at a time; the split
    of the batched run into CHMNet (transfers; also with the candidates' scale features
    computed beforehand, as the demo does once per gallery image), masks and scoring;
  * the authors' architecture (two-stream ResNet-101 at layer3, 240 px, random weights): the
    same comparison from images (the backbone runs per pair, as in the authors' model);
  * the CHM layers alone, FFT (default) vs the folded conv3d reference (``method="direct"``), at
    the small CHM's sizes (6D 7^4, 4D 14^4, 25 pairs) and ResNet-101's (15^4, 30^4, 10 pairs),
    with their largest relative difference;
  * peak extra resident memory of each batched run (sampled every 2 ms), each in a fresh process.
The authors' two-stream backbone runs the query's stream once per chunk (its weights' source
half), the target stream per candidate; the loop runs both streams per pair, as their model does.
Prints JSON.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _timing import median_seconds  # noqa: E402

from xcorr_chm_corr import authors_chmnet, chm_corr_rerank, chm_transfers, correlate4d, correlate6d, load_pretrained  # noqa: E402
from xcorr_chm_corr.scoring import cc_mask, chm_corr_scores, grid_points, paired_cells  # noqa: E402


def small_inputs(n: int = 50) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(256, 7, 7, generator=g).relu_(), torch.randn(n, 256, 7, 7, generator=g).relu_()


def small_loop(chm, q, cands) -> torch.Tensor:
    return torch.cat([chm_corr_rerank(chm, q, c[None]).scores[0] for c in cands])


def resnet_images(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(1, 3, 240, 240, generator=g), torch.randn(n, 3, 240, 240, generator=g)


def resnet_batched(chm, q_img, c_img, chunk: int = 10) -> torch.Tensor:
    """Transfers of the query's 7 x 7 grid onto every candidate image, pairs in chunks."""
    pts = grid_points(7, 7)
    out = []
    with torch.no_grad():
        for s in range(0, c_img.shape[0], chunk):
            c = c_img[s:s + chunk]
            corr = chm(q_img, c)  # one query image: its backbone stream runs once per chunk
            out.append(chm.transfer_normalised(corr, pts.expand(c.shape[0], -1, -1)))
    return paired_cells(torch.cat(out), 7, 7)


def layer_figures(repeats: int) -> dict:
    """FFT vs direct for both CHM layers at the small CHM's and ResNet-101's sizes."""
    g = torch.Generator().manual_seed(1)
    out = {}
    for name, pairs, side in (("small_7x7", 25, 7), ("resnet101_15x15", 10, 15)):
        x6 = torch.rand(pairs, 3, 3, side, side, side, side, generator=g)
        k6 = torch.randn(3, 3, 5, 5, 5, 5, generator=g) * 1e-3
        x4 = torch.rand(pairs, 2 * side, 2 * side, 2 * side, 2 * side, generator=g)
        k4 = torch.randn(5, 5, 5, 5, generator=g) * 1e-3
        entry = {"pairs": pairs}
        for layer, fn, x, k in (("6d", correlate6d, x6, k6), ("4d", correlate4d, x4, k4)):
            ref = fn(x, k, method="direct")
            rel = float((fn(x, k, method="fft") - ref).abs().max() / ref.abs().max())
            t = median_seconds({"fft": lambda: fn(x, k, method="fft"), "direct": lambda: fn(x, k, method="direct")},
                               repeats=repeats)
            entry[layer] = {"fft_ms": round(1000 * t["fft"], 1), "direct_ms": round(1000 * t["direct"], 1),
                            "speedup": round(t["direct"] / t["fft"], 2), "max_rel_diff": float(f"{rel:.2g}")}
        out[name] = entry
    return out


def resnet_loop(chm, q_img, c_img) -> torch.Tensor:
    """One pair at a time through the whole model (both streams per pair, as the authors' model runs)."""
    return torch.cat([resnet_batched(chm, q_img, c_img[i:i + 1], chunk=1) for i in range(c_img.shape[0])])


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024


class RSSPeak:
    """Samples this process's resident memory every 2 ms in a thread; ``.extra`` = peak - start (MB)."""

    def __enter__(self) -> "RSSPeak":
        self.start = self.peak = _rss_mb()
        self.running = True
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        return self

    def _run(self) -> None:
        while self.running:
            self.peak = max(self.peak, _rss_mb())
            time.sleep(0.002)

    def __exit__(self, *exc: object) -> None:
        self.running = False
        self.thread.join()
        self.peak = max(self.peak, _rss_mb())
        self.extra = self.peak - self.start


def peak(kind: str) -> dict:
    """Run one batched re-rank in this (fresh) process; report seconds and peak extra resident memory."""
    torch.set_num_threads(2)
    if kind == "small":
        chm = load_pretrained()
        q, c = small_inputs()
        chm_corr_rerank(chm, q, c[:2])
        with RSSPeak() as mem:
            t0 = time.perf_counter()
            chm_corr_rerank(chm, q, c)
    else:
        chm = authors_chmnet()
        q, c = resnet_images(50)
        resnet_batched(chm, q, c[:1])
        with RSSPeak() as mem:
            t0 = time.perf_counter()
            resnet_batched(chm, q, c)
    dt = time.perf_counter() - t0
    return {"seconds": round(dt, 3), "peak_extra_MB": round(mem.extra, 1)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--skip-resnet101", action="store_true")
    ap.add_argument("--peak", choices=["small", "resnet101"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.peak:
        print(json.dumps(peak(args.peak)))
        return
    torch.set_num_threads(2)
    chm = load_pretrained()
    q, c = small_inputs()
    batched = chm_corr_rerank(chm, q, c).scores[0]
    assert torch.allclose(batched, small_loop(chm, q, c), atol=1e-5), "batched and per-candidate scores differ"
    t = median_seconds({"batched": lambda: chm_corr_rerank(chm, q, c), "per_candidate_loop": lambda: small_loop(chm, q, c)},
                       repeats=args.repeats)
    cells = chm_transfers(chm, q[None], c[None])
    with torch.no_grad():
        c_scales = [t[None] for t in chm.learner.scale_features(c)]  # once per gallery image in a real run
    split = median_seconds({
        "chmnet_transfers": lambda: chm_transfers(chm, q[None], c[None]),
        "chmnet_transfers_gallery_scales_precomputed": lambda: chm_transfers(chm, q[None], c[None], cand_scales=c_scales),
        "cc_masks": lambda: cc_mask(q[None], c[None]),
        "scoring": lambda: chm_corr_scores(q[None], c[None], paired_cells(cells, 7, 7), cc_mask(q[None], c[None])),
    }, repeats=args.repeats)
    out: dict = {"small_chm_1x50": {
        "batched_ms": round(1000 * t["batched"], 1), "per_candidate_loop_ms": round(1000 * t["per_candidate_loop"], 1),
        "speedup": round(t["per_candidate_loop"] / t["batched"], 2),
        "split_ms": {k: round(1000 * v, 2) for k, v in split.items()},
    }}
    out["chm_layers_fft_vs_direct"] = layer_figures(args.repeats)
    me = [sys.executable, __file__, "--peak"]
    out["small_chm_1x50"].update(json.loads(subprocess.run(me + ["small"], capture_output=True, text=True, check=True).stdout))
    if not args.skip_resnet101:
        big = authors_chmnet()
        qi, ci = resnet_images(50)
        assert torch.equal(resnet_batched(big, qi, ci[:4]), resnet_loop(big, qi, ci[:4])), "batched and looped cells differ"
        t = median_seconds({"batched": lambda: resnet_batched(big, qi, ci), "per_candidate_loop": lambda: resnet_loop(big, qi, ci)},
                           repeats=1, warmup=0)
        # split: two-stream backbone vs CHM head (+ transfer) on one chunk of 10 pairs
        with torch.no_grad():
            s = median_seconds({"backbone_10_pairs": lambda: big.features(qi, ci[:10])}, repeats=1, warmup=0)
            fs, ft = big.features(qi, ci[:10])
            s |= median_seconds({"head_and_transfer_10_pairs": lambda: big.transfer_normalised(big.correlate(fs, ft),
                                                                                             grid_points(7, 7).expand(10, -1, -1))},
                                repeats=1, warmup=0)
        out["resnet101_chm_240px_1x50"] = {
            "batched_s": round(t["batched"], 2), "per_candidate_loop_s": round(t["per_candidate_loop"], 2),
            "speedup": round(t["per_candidate_loop"] / t["batched"], 2), "split_s": {k: round(v, 2) for k, v in s.items()},
        }
        out["resnet101_chm_240px_1x50"].update(json.loads(subprocess.run(me + ["resnet101"], capture_output=True, text=True, check=True).stdout))
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
