"""Counterfactual search speed (needs the scc_counterfactual plugin installed).

    python benchmarks/bench_scc.py [--repeats 3]

The issue's setting: random post-ReLU features 2048x7x7 (a ResNet-50 cut), a pooling + linear head to
200 classes, 5 distractors, random auxiliary features (128-d) for the semantic term, 14 edits per
counterfactual (``stop_at_flip=False`` so every variant does the same work). In one run:
  * ours: closed form + 10 % pre-filter (the default);
  * closed form without pre-filter;
  * generic path (candidate maps through g in chunks) with the pre-filter;
  * the baseline: the exhaustive generic path (no pre-filter, no closed form).
Ratios are against the baseline; edits are checked identical between paths with the same candidates.
Then, each in a fresh process, a VGG-style MLP head (512x7x7 -> 4096 -> 4096 -> 200, 10 % pre-filter,
4 edits) with 1 and 20 distractors, by the first-linear path (the default for such heads) and by the
generic path: seconds per counterfactual, peak extra memory, and whether both chose the same edits.
Then the paper's non-linear g (a ResNet-50 cut after layer4[0]: g = layer4[1:] + pool + fc, random
weights), 20 distractors at 224 px (2048x7x7 maps), 10 % pre-filter, ``--tail-edits`` edits, each in
a fresh process: the local path (the default for this g; also with freed memory kept, as the ``xcorr``
command runs, see ``xcorr_core.allocator``), the generic path (chunks from the 1 GB
budget) and the authors' procedure (`authors_search`: candidate maps built in a Python loop, g run
on all of them at once); seconds per edit, peak extra memory, same edits.
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

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).parent))
from _timing import median_seconds  # noqa: E402

from xcorr_scc_counterfactual import PoolLinear, search_counterfactual, semantic_log_likelihood  # noqa: E402
from xcorr_scc_counterfactual.split import first_linear_of  # noqa: E402


def _features(n: int, d: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(d, 7, 7, generator=g).relu()
    ds = torch.randn(n, d, 7, 7, generator=g).relu()
    u = torch.randn(n + 1, 128, 7, 7, generator=g)
    return q, ds, semantic_log_likelihood(u[0], u[1:], 0.1)


def linear_part(repeats: int) -> dict:
    torch.manual_seed(0)
    head = PoolLinear(nn.Linear(2048, 200)).eval()
    q, ds, ls = _features(5, 2048)
    target = int(head(q[None]).argmin())
    lin = (head.fc.weight, head.fc.bias)
    common = dict(log_semantic=ls, semantic_weight=0.4, max_edits=14, stop_at_flip=False)
    runs = {
        "ours_closed_form_prefilter": lambda: search_counterfactual(q, ds, head, target, prefilter=0.1, linear_head=lin, **common),
        "closed_form_no_prefilter": lambda: search_counterfactual(q, ds, head, target, prefilter=1.0, linear_head=lin, **common),
        "generic_prefilter": lambda: search_counterfactual(q, ds, head, target, prefilter=0.1, path="generic", chunk=512, **common),
        "baseline_generic_exhaustive": lambda: search_counterfactual(q, ds, head, target, prefilter=1.0, path="generic", chunk=512, **common),
    }
    res = {k: fn() for k, fn in runs.items()}
    key = lambda r: [(e.query_cell, e.distractor, e.distractor_cell) for e in r.edits]
    t = median_seconds(runs, repeats=repeats, warmup=0)
    base = t["baseline_generic_exhaustive"]
    return {
        "setting": "2048x7x7, pool+linear to 200 classes, 5 distractors, 14 edits, lambda 0.4, tau 0.1",
        "seconds": {k: round(v, 4) for k, v in t.items()},
        "speedup_vs_exhaustive_generic": {k: round(base / v, 1) for k, v in t.items()},
        "prefilter_speedup_on_generic_path": round(base / t["generic_prefilter"], 1),
        "closed_form_speedup_without_prefilter": round(base / t["closed_form_no_prefilter"], 1),
        "candidates": {k: r.candidates for k, r in res.items()},
        "same_edits_closed_vs_generic": key(res["ours_closed_form_prefilter"]) == key(res["generic_prefilter"])
        and key(res["closed_form_no_prefilter"]) == key(res["baseline_generic_exhaustive"]),
        "edits": len(res["ours_closed_form_prefilter"].edits),
        "authors_code_here_s": {"prefilter_10pct": 7.3, "no_prefilter": 89.9},
    }


def mlp_part(n: int, edits: int, path: str) -> dict:
    torch.manual_seed(0)
    head = nn.Sequential(nn.Flatten(), nn.Linear(512 * 49, 4096), nn.ReLU(), nn.Dropout(), nn.Linear(4096, 4096), nn.ReLU(),
                         nn.Dropout(), nn.Linear(4096, 200)).eval()
    q, ds, ls = _features(n, 512, seed=1)
    target = int(head(q[None]).argmin())
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    fl = first_linear_of(head, (512, 7, 7)) if path == "first_linear" else None  # once per model (411 MB block copy)
    prep = time.perf_counter() - t0
    t0 = time.perf_counter()
    r = search_counterfactual(q, ds, head, target, log_semantic=ls, semantic_weight=0.4, prefilter=0.1, max_edits=edits,
                              stop_at_flip=False, chunk=256 if path == "generic" else 2048, first_linear=fl, path=path)
    sec = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"path": r.path, "distractors": n, "edits": [(e.query_cell, e.distractor, e.distractor_cell) for e in r.edits], "candidates": r.candidates, "seconds": round(sec, 2), "prepare_seconds": round(prep, 2),
            "seconds_per_edit": round(sec / max(len(r.edits), 1), 2), "peak_extra_MB": round((peak - base) / 1024, 1)}


def authors_search(q: torch.Tensor, ds: torch.Tensor, g: nn.Module, target: int, log_sem: torch.Tensor, cos: torch.Tensor,
                   lam: float, fraction: float, edits: int) -> list[tuple[int, int, int]]:
    """The authors' search as their code runs it (a faithful sequential version): the pre-filter keeps
    ``int(fraction * total)`` pairs by raw cosine; each step builds every remaining candidate map in a
    Python loop, runs g on the whole stack at once, adds lambda * log L_s, applies the argmax and drops
    the pairs that reuse its query or distractor cell."""
    d, h, w = q.shape
    hw, big_n = h * w, ds.shape[0] * h * w
    cur = q.clone()
    keep = int(fraction * cos.numel())
    pairs = [(int(k) // big_n, int(k) % big_n) for k in torch.topk(cos.flatten(), keep).indices]
    cells = ds.reshape(ds.shape[0], d, hw)
    out = []
    for _ in range(edits):
        maps = []
        for i, j in pairs:
            m = cur.clone()
            m.view(d, hw)[:, i] = cells[j // hw, :, j % hw]
            maps.append(m)
        with torch.no_grad():
            logp = torch.log_softmax(g(torch.stack(maps)), 1)[:, target]
        score = logp + lam * torch.tensor([float(log_sem[i, j]) for i, j in pairs])
        k = int(score.argmax())
        i, j = pairs[k]
        cur.view(d, hw)[:, i] = cells[j // hw, :, j % hw]
        out.append((i, j // hw, j % hw))
        pairs = [(a, b) for a, b in pairs if a != i and b != j]
    return out


def tail_part(variant: str, edits: int) -> dict:
    import torchvision

    from xcorr_scc_counterfactual import semantic_cosine, split_model

    torch.manual_seed(0)
    model = torchvision.models.resnet50(weights=None).eval()
    split = split_model(model, "paper")
    g = torch.Generator().manual_seed(0)
    q, ds = torch.randn(2048, 7, 7, generator=g).relu(), torch.randn(20, 2048, 7, 7, generator=g).relu()
    u = torch.randn(21, 128, 7, 7, generator=g)
    cos = semantic_cosine(u[0], u[1:])
    log_sem = torch.log_softmax(cos / 0.1, 1)
    with torch.no_grad():
        target = int(split.g(q[None])[0].argsort()[-2])
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    if variant == "authors":
        found = authors_search(q, ds, split.g, target, log_sem, cos, 0.4, 0.1, edits)
        chunk, candidates = None, int(0.1 * cos.numel())
    else:
        r = search_counterfactual(q, ds, split.g, target, log_semantic=log_sem, semantic_weight=0.4, prefilter=0.1, prefilter_key=cos,
                                  max_edits=edits, stop_at_flip=False, path=variant, local_tail=split.local_tail())
        found = [(e.query_cell, e.distractor, e.distractor_cell) for e in r.edits]
        chunk, candidates = r.chunk, r.candidates
    sec = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"variant": variant, "edits": found, "candidates": candidates, "chunk": chunk, "seconds": round(sec, 2),
            "seconds_per_edit": round(sec / max(len(found), 1), 2), "peak_extra_MB": round((peak - base) / 1024, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--mlp", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--path", default="first_linear", help=argparse.SUPPRESS)
    ap.add_argument("--edits", type=int, default=4)
    ap.add_argument("--tail", help=argparse.SUPPRESS)
    ap.add_argument("--tail-edits", type=int, default=2)
    ap.add_argument("--retain", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    torch.set_num_threads(2)
    if args.mlp:
        print(json.dumps(mlp_part(args.mlp, args.edits, args.path)))
        return
    if args.tail:
        if args.retain:
            from xcorr_core.allocator import retain_freed_memory

            retain_freed_memory(respect_env=False)
        print(json.dumps(tail_part(args.tail, args.tail_edits) | {"freed_memory_kept": args.retain}))
        return
    out = {"linear_head": linear_part(args.repeats), "mlp_head": []}
    for n in (1, 20):
        runs = {}
        for path in ("first_linear", "generic"):
            cmd = [sys.executable, __file__, "--mlp", str(n), "--edits", str(args.edits), "--path", path]
            runs[path] = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout)
        same = runs["first_linear"].pop("edits") == runs["generic"].pop("edits")
        out["mlp_head"].append({"distractors": n, "same_edits": same,
                                "speedup_first_linear_vs_generic": round(runs["generic"]["seconds"] / runs["first_linear"]["seconds"], 1),
                                **{k: {kk: vv for kk, vv in v.items() if kk not in ("distractors", "path")} for k, v in runs.items()}})
    tail = {}
    runs = {"local": ("local", False), "local_freed_memory_kept": ("local", True), "generic": ("generic", False),
            "authors": ("authors", False)}  # label -> (variant, keep freed memory)
    for label, (variant, retain) in runs.items():
        cmd = [sys.executable, __file__, "--tail", variant, "--tail-edits", str(args.tail_edits)] + (["--retain"] if retain else [])
        tail[label] = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout)
    ref = tail["authors"]["edits"]
    out["resnet50_tail"] = {
        "setting": "ResNet-50 (random weights) cut after layer4[0], g = layer4[1:] + pool + fc, 20 distractors, 2048x7x7, "
                   f"10 % pre-filter, {args.tail_edits} edits, lambda 0.4, tau 0.1",
        **{k: {kk: vv for kk, vv in v.items() if kk != "edits"} | {"same_edits_as_authors": v["edits"] == ref} for k, v in tail.items()},
        "speedup_local_vs_authors": round(tail["authors"]["seconds"] / tail["local"]["seconds"], 1),
        "speedup_local_vs_generic": round(tail["generic"]["seconds"] / tail["local"]["seconds"], 1),
        "speedup_local_freed_memory_kept_vs_authors": round(tail["authors"]["seconds"] / tail["local_freed_memory_kept"]["seconds"], 1),
    }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
