"""Transformer figures beside the CNN ones: ViT-S/16 (timm ``vit_small_patch16_224``, random weights,
224 px: 1 CLS + 14 x 14 patch tokens of 384 channels). Needs timm and the emd_corr / pairx plugins.

    python benchmarks/bench_vit.py [--repeats 5]

In one run:
  * EMD-Corr: one query against N = 50 candidates over block 11's 14 x 14 token grid (the ViT's real,
    signed features; ``clamp_negative_weights: auto``), the cells path as a pipeline runs it, against
    the cost-matrix floor (the 50 cosine matrices as one product over the stored unit cells);
  * PAIR-X, n = 20 matches at block 6 under conservative propagation: the fast path (one batched
    forward, one backward for the layer relevance, vmapped per-match backwards) against the authors'
    procedure (a forward per stage and image, then one retained backward pass per match).
Prints JSON with the ratios.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _timing import median_seconds  # noqa: E402

import xcorr_core as xc  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    import timm
    from xcorr_emd_corr import emd_corr_scores_cells
    from xcorr_pairx import explain_pair, explain_pair_sequential
    from xcorr_pairx.conservative import ConservativePropagation

    torch.manual_seed(0)
    vit = timm.create_model("vit_small_patch16_224", num_classes=0).eval()
    images = torch.rand(51, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        maps = xc.FeatureExtractor(vit, ["blocks.11"])(images).maps["blocks.11"]  # [51, 384, 14, 14]
    q, cands = maps[0], maps[1:]
    cells = xc.CellMaps.from_maps(cands[None])
    unit, q_unit = cells.unit[0], torch.nn.functional.normalize(q.flatten(1), dim=0)
    emd = median_seconds({
        "cost_matrix_floor": lambda: torch.matmul(unit, q_unit),
        "emd_corr_cells": lambda: emd_corr_scores_cells(q[None], cells, clamp_negative=True),
    }, repeats=args.repeats)
    a, b = images[0], images[1]
    comp = ConservativePropagation()
    px = median_seconds({
        "pairx_fast": lambda: explain_pair(vit, a, b, layer="blocks.6", n=20),
        "pairx_retained_backward_passes": lambda: explain_pair_sequential(vit, a, b, layer="blocks.6", n=20, composite=comp),
    }, repeats=max(1, args.repeats // 2), warmup=1)
    fast, seq = explain_pair(vit, a, b, layer="blocks.6", n=20), explain_pair_sequential(vit, a, b, layer="blocks.6", n=20, composite=comp)
    print(json.dumps({
        "model": "timm vit_small_patch16_224 (random weights), 224 px, 14x14 tokens x 384",
        "emd_corr": {"n": 50, "ms": {k: round(v * 1000, 2) for k, v in emd.items()},
                     "ratio_to_floor": round(emd["emd_corr_cells"] / emd["cost_matrix_floor"], 1)},
        "pairx": {"n": 20, "layer": "blocks.6", "engine": fast.meta.get("lrp_engine"), "ms": {k: round(v * 1000, 1) for k, v in px.items()},
                  "speedup": round(px["pairx_retained_backward_passes"] / px["pairx_fast"], 2),
                  "same_matches": bool(torch.equal(fast.matches, seq.matches)),
                  "max_pixel_map_rel_diff": float((fast.pixel_maps_a - seq.pixel_maps_a).abs().max() / seq.pixel_maps_a.abs().max())},
        "threads": torch.get_num_threads(),
    }, indent=2))


if __name__ == "__main__":
    main()
