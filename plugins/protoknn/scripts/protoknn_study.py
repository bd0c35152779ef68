"""The ProtoKNN paper's checks on SynthBirds, over seeds: ProtoKNN with and without the
auxiliary loss, the cluster-loss ablation rows, and a ProtoPNet-style linear head on the same
profiles; accuracy for k = 1, 3, 5, 10 on clean / sticker / style, prototype variance.

    python plugins/protoknn/scripts/protoknn_study.py [--steps 500] [--seeds 0 1 2] [--out .../weights/study.json]

Each (row, seed) run trains from the shipped SmallResNet with the same recipe and budget, projects
the prototypes and evaluates; results are appended to the JSON file atomically after every run, and
a rerun skips the runs already there (so the study resumes). The demo and the docs read that file.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from xcorr_core.data import SynthBirds
from xcorr_core.fileio import atomic_write
from xcorr_core.models import load_pretrained as load_core_model
from xcorr_protoknn.demo import linear_head
from xcorr_protoknn.knn import ProtoKNNClassifier
from xcorr_protoknn.model import ProtoKNNNet
from xcorr_protoknn.projection import encode, project_prototypes
from xcorr_protoknn.training import TrainConfig, train

ROWS: dict[str, dict] = {
    "full": {},
    "no_aux": {"aux_weight": 0.0},
    "most_similar": {"cluster_mode": "most_similar"},
    "sampling": {"cluster_mode": "sampling"},
    "debias": {"cluster_mode": "debias"},
    "assignment": {"cluster_mode": "assignment"},
}


def run(row: str, seed: int, steps: int) -> dict:
    t0 = time.perf_counter()
    torch.manual_seed(seed)
    cfg = TrainConfig(steps=steps, seed=seed, **ROWS[row])
    model = ProtoKNNNet(load_core_model("birds"), "layer4", 256, dim=64, prototypes=128, seed=seed)
    data = SynthBirds("train")
    train(model, data.images, data.labels, cfg, progress=False)
    proj = project_prototypes(model, data.images)
    gal = encode(model, data.images)[0]
    clf = ProtoKNNClassifier(gal, data.labels)
    head = linear_head(gal, data.labels, seed=seed)
    out: dict = {"row": row, "seed": seed, "steps": steps, "variance": proj.variance_after,
                 "variance_before_projection": proj.variance_before, "duplicates": proj.duplicates}
    for variant in ("clean", "sticker", "style"):
        test = SynthBirds("test", variant)  # type: ignore[arg-type]
        prof = encode(model, test.images)[0]
        acc = {f"k={k}": float((clf.predict(prof, k).predictions == test.labels).float().mean()) for k in (1, 3, 5, 10)}
        with torch.no_grad():
            acc["linear_head"] = float((head(prof).argmax(1) == test.labels).float().mean())
        out[variant] = acc
    out["seconds"] = round(time.perf_counter() - t0, 1)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--steps", type=int, default=500)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--rows", nargs="+", default=list(ROWS), choices=list(ROWS))
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "xcorr_protoknn" / "weights" / "study.json")
    args = ap.parse_args()
    done = json.loads(args.out.read_text()) if args.out.is_file() else {"runs": []}
    have = {(r["row"], r["seed"], r["steps"]) for r in done["runs"]}
    for seed in args.seeds:
        for row in args.rows:
            if (row, seed, args.steps) in have:
                continue
            res = run(row, seed, args.steps)
            done["runs"].append(res)
            atomic_write(args.out, lambda f: f.write(json.dumps(done, indent=1).encode()))
            print(json.dumps({k: res[k] for k in ("row", "seed", "variance", "clean", "sticker", "seconds")}), flush=True)


if __name__ == "__main__":
    main()
