"""PAIR-X explanation time (needs the pairx plugin): the batched path (with the cached LRP engine,
the default, and with zennit's hooks) vs the authors' sequential algorithm (zennit's hooks), one
pair on a torchvision ResNet-50 (random weights) at 224 px, layer3, n = 20, in the same run. Each
variant runs in a fresh process so its peak memory (max RSS) is its own. Prints JSON with seconds
per stage, the ratios, and how far the pixel maps are from the sequential ones.

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
    if variant == "sequential":
        fn = explain_pair_sequential
    else:
        def fn(*args, **kw):
            return explain_pair(*args, engine="zennit" if variant == "batched_zennit" else "cached", **kw)
    fn(model, a, b, layer=layer, n=2)  # warm-up
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    exp = fn(model, a, b, layer=layer, n=n)
    total = time.perf_counter() - t0
    return {"seconds": round(total, 2), "stages": {k: round(v, 2) for k, v in exp.timings.items()},
            "peak_rss_MB": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "peak_extra_MB": round((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024, 1),
            "maps": torch.cat([exp.pixel_maps_a, exp.pixel_maps_b]).double().flatten().tolist()[::97],
            "matches": exp.matches.tolist()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=20)
    ap.add_argument("--layer", default="layer3")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--variant", choices=["batched", "batched_zennit", "sequential"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.variant:
        print(json.dumps(one(args.variant, args.n, args.layer, args.size)))
        return
    res = {}
    for v in ("sequential", "batched_zennit", "batched"):
        out = subprocess.run([sys.executable, __file__, "--variant", v, "--n", str(args.n), "--layer", args.layer, "--size", str(args.size)],
                             capture_output=True, text=True, check=True).stdout
        res[v] = json.loads(out.strip().splitlines()[-1])
    ref = res["sequential"]
    ref_maps, ref_matches = ref["maps"], ref["matches"]
    scale = max(abs(v) for v in ref_maps) or 1.0
    for r in res.values():
        r["same_matches_as_sequential"] = r.pop("matches") == ref_matches
        r["pixel_maps_max_rel_diff"] = max(abs(x - y) for x, y in zip(r.pop("maps"), ref_maps)) / scale
    print(json.dumps({"model": "resnet50 (random weights)", "size": args.size, "layer": args.layer, "n": args.n, **res,
                      "speedup": round(ref["seconds"] / res["batched"]["seconds"], 2),
                      "speedup_batched_zennit": round(ref["seconds"] / res["batched_zennit"]["seconds"], 2)}, indent=2))


if __name__ == "__main__":
    main()
