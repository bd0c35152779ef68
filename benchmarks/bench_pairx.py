"""PAIR-X explanation time (needs the pairx plugin): the batched path (with the cached LRP engine,
the default, and with zennit's hooks) vs the authors' sequential algorithm (zennit's hooks), one
pair on a torchvision ResNet-50 (random weights) at 224 px, layer3, n = 20, in the same run. Each
variant runs in a fresh process so its peak memory (max RSS) is its own. Prints JSON with seconds
per stage, the ratios, and how far the pixel maps are from the sequential ones.

The floor: the 2n per-match pixel maps (n vmapped backward passes of the same masks, chunks of 5)
through the cached LRP engine vs the same backward passes with plain gradients (no rules), from
one forward each, interleaved in one process (``--reps`` rounds; medians and best), the time to
build the rule-modified forward quantities included. Run twice: with glibc's default allocator and
with ``MALLOC_MMAP_THRESHOLD_`` / ``MALLOC_TRIM_THRESHOLD_`` raised, which keeps freed blocks for
reuse instead of returning them to the OS (fresh pages cost a fault each).

    python benchmarks/bench_pairx.py [--n 20] [--layer layer3] [--size 224] [--reps 5]
"""
from __future__ import annotations

import argparse
import json
import os
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


MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": str(2 << 30), "MALLOC_TRIM_THRESHOLD_": str(4 << 30)}


def floor(n: int, layer: str, size: int, reps: int, chunk: int = 5) -> dict:
    """Seconds for the pixel-map stage alone: cached LRP engine vs plain gradients, same masks."""
    import statistics

    import torch
    import torchvision

    from xcorr_pairx import default_composite
    from xcorr_pairx.explain import _masks
    from xcorr_pairx.lrp import captured_forward

    torch.manual_seed(0)
    model = torchvision.models.resnet50(weights=None).eval()
    g = torch.Generator().manual_seed(1)
    x0 = torch.rand(2, 3, size, size, generator=g)
    composite = default_composite(model)

    def stage(comp) -> float:
        with captured_forward(model, layer, comp) as (m, store), torch.enable_grad():
            x = x0.clone().requires_grad_(True)
            m(x)
            acts = store["a"]
            cells = acts.shape[-1] * acts.shape[-2]
            pairs = torch.stack([torch.arange(n) * 7 % cells, torch.arange(n) * 11 % cells], 1)
            masks = _masks(acts.detach(), pairs)
            t0 = time.perf_counter()
            for s in range(0, n, chunk):
                torch.autograd.grad(acts, x, grad_outputs=masks[s:s + chunk], is_grads_batched=True, retain_graph=True)
            return time.perf_counter() - t0

    stage(composite), stage(None)  # warm-up
    lrp, plain = [], []
    for _ in range(reps):
        lrp.append(stage(composite))
        plain.append(stage(None))
    med_l, med_p = statistics.median(lrp), statistics.median(plain)
    return {"what": f"{n} vmapped backward passes (2n pixel maps) from {layer}, chunks of {chunk}, {reps} interleaved rounds",
            "cached_lrp_median_s": round(med_l, 3), "plain_gradient_median_s": round(med_p, 3),
            "cached_lrp_best_s": round(min(lrp), 3), "plain_gradient_best_s": round(min(plain), 3),
            "ratio_median": round(med_l / med_p, 3), "ratio_best": round(min(lrp) / min(plain), 3), "goal": "<= 1.3"}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=20)
    ap.add_argument("--layer", default="layer3")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--variant", choices=["batched", "batched_zennit", "sequential", "floor"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.variant == "floor":
        print(json.dumps(floor(args.n, args.layer, args.size, args.reps)))
        return
    if args.variant:
        print(json.dumps(one(args.variant, args.n, args.layer, args.size)))
        return
    res = {}
    for v in ("sequential", "batched_zennit", "batched"):
        out = subprocess.run([sys.executable, __file__, "--variant", v, "--n", str(args.n), "--layer", args.layer, "--size", str(args.size)],
                             capture_output=True, text=True, check=True).stdout
        res[v] = json.loads(out.strip().splitlines()[-1])
    floors = {}
    for label, extra in (("default_allocator", {}), ("malloc_keeps_freed_blocks", MALLOC_ENV)):
        out = subprocess.run([sys.executable, __file__, "--variant", "floor", "--n", str(args.n), "--layer", args.layer,
                              "--size", str(args.size), "--reps", str(args.reps)],
                             capture_output=True, text=True, check=True, env={**os.environ, **extra}).stdout
        floors[label] = json.loads(out.strip().splitlines()[-1])
    ref = res["sequential"]
    ref_maps, ref_matches = ref["maps"], ref["matches"]
    scale = max(abs(v) for v in ref_maps) or 1.0
    for r in res.values():
        r["same_matches_as_sequential"] = r.pop("matches") == ref_matches
        r["pixel_maps_max_rel_diff"] = max(abs(x - y) for x, y in zip(r.pop("maps"), ref_maps)) / scale
    print(json.dumps({"model": "resnet50 (random weights)", "size": args.size, "layer": args.layer, "n": args.n, **res,
                      "speedup": round(ref["seconds"] / res["batched"]["seconds"], 2),
                      "speedup_batched_zennit": round(ref["seconds"] / res["batched_zennit"]["seconds"], 2),
                      "pixel_maps_vs_plain_gradients": floors}, indent=2))


if __name__ == "__main__":
    main()
