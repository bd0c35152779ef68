"""Train the ProtoKNN model shipped with xcorr-protoknn on SynthBirds, from the shipped SmallResNet.

    python plugins/protoknn/scripts/train_protoknn.py [--steps N] [--seed 0] [--out DIR]

Spreads 128 prototypes of dimension 64 on the sphere, trains with the paper's losses
(task margin + 0.1 cluster + 1.0 auxiliary margin) on class-balanced batches (24 classes x 2),
projects the prototypes onto training patches and writes protoknn_smallresnet.pt and
protoknn_card.json (recipe, k-NN accuracy on clean / sticker / style test sets, prototype
variance, duplicates). A checkpoint beside the output lets an interrupted run resume.
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
from xcorr_protoknn.knn import ProtoKNNClassifier
from xcorr_protoknn.model import ProtoKNNNet
from xcorr_protoknn.pretrained import save_model
from xcorr_protoknn.projection import encode, project_prototypes
from xcorr_protoknn.training import TrainConfig, train


def evaluate(model: ProtoKNNNet, train_images: torch.Tensor, train_labels: torch.Tensor) -> dict:
    gallery = ProtoKNNClassifier(encode(model, train_images)[0], train_labels)
    out = {}
    for variant in ("clean", "sticker", "style"):
        test = SynthBirds("test", variant)  # type: ignore[arg-type]
        prof = encode(model, test.images)[0]
        out[variant] = {f"k={k}": float((gallery.predict(prof, k).predictions == test.labels).float().mean()) for k in (1, 3, 5, 10)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--steps", type=int, default=TrainConfig().steps)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "xcorr_protoknn" / "weights")
    args = ap.parse_args()
    t0 = time.perf_counter()
    cfg = TrainConfig(steps=args.steps, seed=args.seed)
    torch.manual_seed(args.seed)
    model = ProtoKNNNet(load_core_model("birds"), "layer4", 256, dim=64, prototypes=128, seed=args.seed)
    data = SynthBirds("train")
    args.out.mkdir(parents=True, exist_ok=True)
    hist = train(model, data.images, data.labels, cfg, checkpoint=args.out / f"train_seed{args.seed}.ckpt", progress=True)
    before = evaluate(model, data.images, data.labels)
    proj = project_prototypes(model, data.images)
    after = evaluate(model, data.images, data.labels)
    card = {
        "model": "ProtoKNN on the shipped SynthBirds SmallResNet (layer4 7x7x256 -> 1x1 add-on D=64), M=128 prototypes, 112 px",
        "recipe": cfg.model_dump(), "train_images": len(data), "train_seconds": round(hist["seconds"], 1),
        "accuracy_before_projection": before, "accuracy": after,
        "prototype_variance": {"before_projection": proj.variance_before, "after_projection": proj.variance_after},
        "projection_duplicates": proj.duplicates,
        "final_losses": {k: round(sum(h[k] for h in hist["history"][-100:]) / min(100, len(hist["history"])), 4)
                         for k in ("task", "cluster", "aux", "total")},
        "total_seconds": round(time.perf_counter() - t0, 1), "torch": torch.__version__,
    }
    save_model(model, args.out / "protoknn_smallresnet.pt", projection=proj, meta={"accuracy": after})
    atomic_write(args.out / "protoknn_card.json", lambda f: f.write(json.dumps(card, indent=2).encode()))
    (args.out / f"train_seed{args.seed}.ckpt").unlink(missing_ok=True)
    print(json.dumps({k: card[k] for k in ("accuracy", "prototype_variance", "projection_duplicates", "total_seconds")}, indent=2))


if __name__ == "__main__":
    main()
