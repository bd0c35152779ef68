"""Train the CHM head shipped with xcorr-chm-corr on SynthBirds keypoint pairs (frozen backbone).

    python plugins/chm_corr/scripts/train_chm.py [--steps 1500] [--out plugins/chm_corr/xcorr_chm_corr/weights]

Writes chm_smallresnet.pt (head, float16) and chm_card.json (recipe, PCK on held-out test
pairs beside the raw-correlation argmax and mutual-NN baselines on the same features).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from xcorr_core.data import SynthBirds
from xcorr_core.data.synth_birds import CLASS_GENUS
from xcorr_core.fileio import atomic_write
from xcorr_core.models import load_pretrained as load_core_model
from xcorr_chm_corr.chmnet import CHMNet
from xcorr_chm_corr.pretrained import SHIPPED_FEAT_DIM, SHIPPED_LAYER, save_head
from xcorr_chm_corr.training import TrainConfig, evaluate_pck, keypoint_pairs, train_head


@torch.no_grad()
def maps(model: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    return torch.cat([model.forward_features(images[i:i + 128].float() / 255) for i in range(0, len(images), 128)])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--steps", type=int, default=TrainConfig().steps)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "xcorr_chm_corr" / "weights")
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    cfg = TrainConfig(steps=args.steps, seed=args.seed)
    t0 = time.perf_counter()
    backbone = load_core_model("birds")
    full = SynthBirds("train", per_class=35)  # images 720.. are held out for validation
    n_train = 30 * 24
    test = SynthBirds("test")
    genus_of = torch.tensor(CLASS_GENUS)
    feats_all = maps(backbone, full.images)
    feats_flip = maps(backbone, full.images[:n_train].flip(-1))
    tr = slice(0, n_train)
    va = slice(n_train, len(full))
    gv = torch.Generator().manual_seed(123)
    val_pairs = keypoint_pairs(full.labels[va], genus_of[full.labels[va]], full.keypoints[va], 200, generator=gv)
    model = CHMNet(backbone, SHIPPED_LAYER, SHIPPED_FEAT_DIM, ktype="psi")
    hist = train_head(model, feats_all[tr], feats_flip, full.keypoints[tr], full.labels[tr], genus_of[full.labels[tr]], 112, cfg,
                      val=(feats_all[va], full.keypoints[va], full.boxes[va], val_pairs), progress=True)
    # held-out test pairs: same class, and different classes of one genus
    test_feats = maps(backbone, test.images)
    gt = torch.Generator().manual_seed(321)
    results = {}
    for mode in ("class", "genus"):
        pairs = keypoint_pairs(test.labels, genus_of[test.labels], test.keypoints, 500, mode=mode, generator=gt)  # type: ignore[arg-type]
        results[mode] = {m: evaluate_pck(model, test_feats, test.keypoints, test.boxes, pairs, 112, method=m)  # type: ignore[arg-type]
                         for m in ("chm", "argmax", "mutual_nn")}
        print(mode, json.dumps(results[mode]))
    args.out.mkdir(parents=True, exist_ok=True)
    card = {
        "model": "CHM head (psi kernels, 3 scales) on the shipped SynthBirds SmallResNet layer4 (frozen), 112 px",
        "recipe": cfg.model_dump() | {"optimizer": "Adam", "loss": "squared L2 of normalised keypoints, mean per pair",
                                      "train_images": n_train, "val_images": len(full) - n_train, "val_pairs": 200},
        "test_pairs": "500 same-class and 500 same-genus/different-class pairs of SynthBirds test, >= 3 shared visible keypoints",
        "pck_test": results,
        "history": hist["history"],
        "train_seconds": round(hist["seconds"], 1),
        "total_seconds": round(time.perf_counter() - t0, 1),
        "torch": torch.__version__,
    }
    save_head(model, args.out / "chm_smallresnet.pt", meta={"pck_test": results})
    atomic_write(args.out / "chm_card.json", lambda f: f.write(json.dumps(card, indent=2).encode()))
    print(json.dumps({"pck_test": results, "seconds": card["total_seconds"]}, indent=2))


if __name__ == "__main__":
    main()
