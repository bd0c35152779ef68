"""EMD-Corr re-ranking speed (needs the emd_corr plugin installed).

    python benchmarks/bench_emd_corr.py [--repeats 5]

In one run, one query against N = 50 candidates of 2048x7x7 (post-ReLU random features):
  * the plugin's batched scorer, with the authors' stopping rule (the default) and with
    POT's criterion (marginal error < 1e-9);
  * the naive baseline: a loop over candidates computing the same weights and cost and
    calling ``ot.sinkhorn`` (POT's default stopThr 1e-9) per candidate;
  * one ResNet-50 forward pass at 224 px (batch 1), as the yardstick of the issue;
  * the cells layout (candidates as unit cells x channels, prepared once by the store, float32 and
    float16 as stored) against the cost-matrix floor: the 50 cosine matrices as one product over
    unit vectors laid out contiguously, and the score difference float16 storage makes.
Then, in a fresh process, 64 queries x 50 candidates: queries/s and peak extra memory.
Prints JSON.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import ot
import torch
import torchvision

sys.path.insert(0, str(Path(__file__).parent))
from _timing import median_seconds  # noqa: E402

import xcorr_core as xc  # noqa: E402
from xcorr_emd_corr import emd_corr_scores, emd_corr_scores_cells  # noqa: E402


def naive_scores(q: torch.Tensor, cands: torch.Tensor, eps: float = 0.05, L: int = 5) -> torch.Tensor:
    """Per-candidate loop: weights, cosine cost, ot.sinkhorn, top-L score."""
    C = q.shape[0]
    qf = q.reshape(C, -1)
    out = []
    for g in cands:
        gf = g.reshape(C, -1)
        hw = qf.shape[1]
        mq, mg = qf.mean(1), gf.mean(1)
        den = mq.norm() * mg.norm() * hw
        u, v = (qf.T @ mg) / den, (gf.T @ mq) / den
        u, v = u / (u.sum() + 1e-5), v / (v.sum() + 1e-5)
        sim = torch.nn.functional.normalize(qf, dim=0).T @ torch.nn.functional.normalize(gf, dim=0)
        T = ot.sinkhorn(u.double().numpy(), v.double().numpy(), (1 - sim).double().numpy(), eps)
        top = np.argsort(T.ravel())[::-1][:L]
        out.append(float((T.ravel()[top] * sim.double().numpy().ravel()[top]).sum()))
    return torch.tensor(out)


def batch_part(q: int, n: int) -> dict:
    g = torch.Generator().manual_seed(1)
    queries = torch.randn(q, 2048, 7, 7, generator=g).relu_()
    cands = torch.randn(q, n, 2048, 7, 7, generator=g).relu_()
    emd_corr_scores(queries[:2], cands[:2])  # warm-up
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    emd_corr_scores(queries, cands)
    dt = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"queries": q, "candidates": n, "seconds": round(dt, 3), "queries_per_s": round(q / dt, 1),
            "input_MB": round((queries.numel() + cands.numel()) * 4 / 2**20, 1), "peak_extra_MB": round((peak - base) / 1024, 1)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--batch-only", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.batch_only:
        print(json.dumps(batch_part(64, 50)))
        return
    g = torch.Generator().manual_seed(0)
    q = torch.randn(2048, 7, 7, generator=g).relu_()
    cands = torch.randn(50, 2048, 7, 7, generator=g).relu_()
    r50 = torchvision.models.resnet50(weights=None).eval()
    img = torch.rand(1, 3, 224, 224)

    def forward() -> None:
        with torch.no_grad():
            r50(img)

    cells = xc.CellMaps.from_maps(cands[None])
    half = cells.model_copy(update={"unit": cells.unit.half().float()})  # as read from a float16 cells store
    unit, q_unit = cells.unit[0], torch.nn.functional.normalize(q.flatten(1), dim=0)  # [50, 49, 2048], [2048, 49]
    t = median_seconds({
        "cost_matrix_floor": lambda: torch.matmul(unit, q_unit),
        "emd_corr_cells": lambda: emd_corr_scores_cells(q[None], cells),
        "emd_corr_authors_rule": lambda: emd_corr_scores(q, cands),
        "emd_corr_pot_criterion": lambda: emd_corr_scores(q, cands, stop="marginal", tol=1e-9, max_iter=1000),
        "naive_pot_loop": lambda: naive_scores(q, cands),
        "resnet50_forward": forward,
    }, repeats=args.repeats)
    ref = naive_scores(q, cands)
    fast = emd_corr_scores(q, cands).scores[0]
    conv = emd_corr_scores(q, cands, stop="marginal", tol=1e-9, max_iter=1000).scores[0]
    top20 = lambda s: s.argsort(descending=True)[:20].tolist()  # noqa: E731
    batch = json.loads(subprocess.run([sys.executable, __file__, "--batch-only"], capture_output=True, text=True, check=True).stdout)
    ms = {k: round(v * 1000, 2) for k, v in t.items()}
    cell_scores = emd_corr_scores_cells(q[None], cells).scores[0]
    half_scores = emd_corr_scores_cells(q[None], half).scores[0]
    print(json.dumps({
        "cells_layout": {"ms_cells": ms["emd_corr_cells"], "ms_maps": ms["emd_corr_authors_rule"], "ms_floor": ms["cost_matrix_floor"],
                         "cells_vs_floor": round(t["emd_corr_cells"] / t["cost_matrix_floor"], 2),
                         "maps_vs_floor": round(t["emd_corr_authors_rule"] / t["cost_matrix_floor"], 2),
                         "max_abs_score_diff_cells_vs_maps": float((cell_scores - fast).abs().max()),
                         "float16_store_max_abs_score_diff": float((half_scores - cell_scores).abs().max()),
                         "float16_store_max_rel_score_diff": float(((half_scores - cell_scores).abs() / cell_scores.abs()).max()),
                         "float16_store_same_order": cell_scores.argsort(descending=True).tolist() == half_scores.argsort(descending=True).tolist(),
                         "float16_store_top20_identical": top20(half_scores) == top20(cell_scores)},
        "one_query": {"N": 50, "features": [2048, 7, 7], "ms": ms,
                      "speedup_vs_naive_authors_rule": round(t["naive_pot_loop"] / t["emd_corr_authors_rule"], 1),
                      "speedup_vs_naive_pot_criterion": round(t["naive_pot_loop"] / t["emd_corr_pot_criterion"], 1),
                      "fraction_of_resnet50_forward": round(t["emd_corr_authors_rule"] / t["resnet50_forward"], 3),
                      "top20_identical_pot_criterion": top20(conv) == top20(ref),
                      "top20_identical_authors_rule": top20(fast) == top20(ref),
                      "max_abs_score_diff_pot_criterion": float((conv.double() - ref).abs().max()),
                      "max_abs_score_diff_authors_rule": float((fast.double() - ref).abs().max())},
        "batch": batch, "threads": torch.get_num_threads(),
    }, indent=2))


if __name__ == "__main__":
    main()
