"""Gallery search: faiss (GalleryIndex, exact inner product) vs a torch matmul top-k, same vectors.

    python benchmarks/bench_index.py [--n 100000] [--dim 2048] [--queries 256] [--k 50]

Prints JSON with queries/s for both, their ratio, and whether the top-k agree.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _timing import median_seconds  # noqa: E402

from xcorr_core import GalleryIndex  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=2048)
    ap.add_argument("--queries", type=int, default=256)
    ap.add_argument("--k", type=int, default=50)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    g = torch.Generator().manual_seed(0)
    gallery = torch.randn(args.n, args.dim, generator=g)
    queries = torch.randn(args.queries, args.dim, generator=g)
    t0 = time.perf_counter()
    index = GalleryIndex(args.dim)
    index.add(gallery, labels=torch.zeros(args.n, dtype=torch.long))
    build_s = time.perf_counter() - t0
    gn = torch.nn.functional.normalize(gallery, dim=1)

    def naive() -> torch.Tensor:
        qn = torch.nn.functional.normalize(queries, dim=1)
        return (qn @ gn.T).topk(args.k, dim=1).indices

    t = median_seconds({"faiss": lambda: index.search(queries, args.k), "torch_matmul_topk": naive}, args.repeats)
    a, b = index.search(queries, args.k).positions, naive()
    agree = sum(len(set(x) & set(y)) for x, y in zip(a.tolist(), b.tolist())) / a.numel()
    print(json.dumps({
        "gallery": [args.n, args.dim], "queries": args.queries, "k": args.k, "threads": torch.get_num_threads(),
        "index_build_s": round(build_s, 2),
        "faiss_queries_per_s": round(args.queries / t["faiss"], 1),
        "torch_queries_per_s": round(args.queries / t["torch_matmul_topk"], 1),
        "ratio_faiss_vs_torch": round(t["torch_matmul_topk"] / t["faiss"], 3),
        "topk_agreement": round(agree, 5),
    }, indent=2))


if __name__ == "__main__":
    main()
