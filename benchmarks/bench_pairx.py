"""PAIR-X explanation time (needs the pairx plugin): the batched path vs the authors'
sequential algorithm, one pair on a torchvision ResNet-50 (random weights) at 224 px,
layer3, n = 20, in the same run. Each variant runs in a fresh process so its peak memory
(max RSS) is its own. Prints JSON with seconds per stage and the ratio.

    python benchmarks/bench_pairx.py [--n 20] [--layer layer3] [--size 224]
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time


def one(variant: str, n: int, layer: str, size: int) -> dict:
    import torch
    import torchvision

    from xcorr_pairx import explain_pair, explain_pair_sequential

    torch.manual_seed(0)
    model = torchvision.models.resnet50(weights=None).eval()
    g = torch.Generator().manual_seed(1)
    a, b = torch.rand(3, size, size, generator=g), torch.rand(3, size, size, generator=g)
    fn = explain_pair if variant == "batched" else explain_pair_sequential
    fn(model, a, b, layer=layer, n=2)  # warm-up
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    exp = fn(model, a, b, layer=layer, n=n)
    total = time.perf_counter() - t0
    return {"seconds": round(total, 2), "stages": {k: round(v, 2) for k, v in exp.timings.items()},
            "peak_rss_MB": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "peak_extra_MB": round((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024, 1),
            "maps_checksum": float(exp.pixel_maps_a.double().sum() + exp.pixel_maps_b.double().sum()),
            "matches": exp.matches.tolist()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=20)
    ap.add_argument("--layer", default="layer3")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--variant", choices=["batched", "sequential"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.variant:
        print(json.dumps(one(args.variant, args.n, args.layer, args.size)))
        return
    res = {}
    for v in ("sequential", "batched"):
        out = subprocess.run([sys.executable, __file__, "--variant", v, "--n", str(args.n), "--layer", args.layer, "--size", str(args.size)],
                             capture_output=True, text=True, check=True).stdout
        res[v] = json.loads(out.strip().splitlines()[-1])
    same = res["batched"]["matches"] == res["sequential"]["matches"]
    rel = abs(res["batched"]["maps_checksum"] - res["sequential"]["maps_checksum"]) / max(1e-12, abs(res["sequential"]["maps_checksum"]))
    for r in res.values():
        r.pop("matches")
    print(json.dumps({"model": "resnet50 (random weights)", "size": args.size, "layer": args.layer, "n": args.n, **res,
                      "speedup": round(res["sequential"]["seconds"] / res["batched"]["seconds"], 2),
                      "same_matches": same, "pixel_map_checksum_rel_diff": rel}, indent=2))


if __name__ == "__main__":
    main()
