"""Train a CHM head on SynthBirds keypoint pairs for a frozen backbone: by default the shipped
SmallResNet's layer4 (the head shipped with xcorr-chm-corr); ``--model``/``--layer`` name any other
(the core's ``birds_vit``, or ``timm:NAME`` / ``torchvision:NAME`` / ``hf:PATH`` with ``--weights``).

    python plugins/chm_corr/scripts/train_chm.py [--steps 1500] [--out plugins/chm_corr/xcorr_chm_corr/weights]
    python plugins/chm_corr/scripts/train_chm.py --model birds_vit --layer encoder.layers.encoder_layer_3 \
        --steps 600 --name chm_birds_vit

Writes NAME.pt (head, float16; it names its backbone and layer, so the re-rankers' ``weights:`` option
loads it with them) and NAME_card.json (recipe, PCK on held-out test pairs beside the raw-correlation
argmax and mutual-NN baselines on the same features); the default name keeps the shipped chm_card.json.
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
from xcorr_core.features import FeatureExtractor
from xcorr_core.models import SHIPPED
from xcorr_core.models import load_pretrained as load_core_model
from xcorr_core.models import load_model
from xcorr_chm_corr.chmnet import CHMNet
from xcorr_chm_corr.pretrained import SHIPPED_LAYER, save_head
from xcorr_chm_corr.training import TrainConfig, evaluate_pck, keypoint_pairs, train_head


@torch.no_grad()
def maps(model: torch.nn.Module, images: torch.Tensor, layer: str = SHIPPED_LAYER) -> torch.Tensor:
    """Cells `[N, C, h, w]` of ``layer`` (any layout) for uint8 images."""
    if hasattr(model, "forward_features") and layer == SHIPPED_LAYER:  # the shipped SmallResNet, as the head was trained
        return torch.cat([model.forward_features(images[i:i + 128].float() / 255) for i in range(0, len(images), 128)])
    fx = FeatureExtractor(model, [layer])
    return torch.cat([fx(images[i:i + 128].float() / 255).maps[layer] for i in range(0, len(images), 128)])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--steps", type=int, default=TrainConfig().steps)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "xcorr_chm_corr" / "weights")
    ap.add_argument("--model", default="birds", help="the frozen backbone: a shipped name or timm:/torchvision:/hf:/open_clip: NAME")
    ap.add_argument("--weights", default=None, help="local weights of a named model")
    ap.add_argument("--layer", default=SHIPPED_LAYER, help="the backbone layer whose cells are matched")
    ap.add_argument("--name", default="chm_smallresnet", help="file stem of the head (NAME.pt) and its card")
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    cfg = TrainConfig(steps=args.steps, seed=args.seed)
    t0 = time.perf_counter()
    backbone = load_core_model(args.model) if args.model in SHIPPED else load_model(args.model, args.weights)
    full = SynthBirds("train", per_class=35)  # images 720.. are held out for validation
    n_train = 30 * 24
    test = SynthBirds("test")
    genus_of = torch.tensor(CLASS_GENUS)
    feats_all = maps(backbone, full.images, args.layer)
    feats_flip = maps(backbone, full.images[:n_train].flip(-1), args.layer)
    tr = slice(0, n_train)
    va = slice(n_train, len(full))
    gv = torch.Generator().manual_seed(123)
    val_pairs = keypoint_pairs(full.labels[va], genus_of[full.labels[va]], full.keypoints[va], 200, generator=gv)
    model = CHMNet(backbone, args.layer, int(feats_all.shape[1]), ktype="psi")
    hist = train_head(model, feats_all[tr], feats_flip, full.keypoints[tr], full.labels[tr], genus_of[full.labels[tr]], 112, cfg,
                      val=(feats_all[va], full.keypoints[va], full.boxes[va], val_pairs), progress=True)
    # held-out test pairs: same class, and different classes of one genus
    test_feats = maps(backbone, test.images, args.layer)
    gt = torch.Generator().manual_seed(321)
    results = {}
    for mode in ("class", "genus"):
        pairs = keypoint_pairs(test.labels, genus_of[test.labels], test.keypoints, 500, mode=mode, generator=gt)  # type: ignore[arg-type]
        results[mode] = {m: evaluate_pck(model, test_feats, test.keypoints, test.boxes, pairs, 112, method=m)  # type: ignore[arg-type]
                         for m in ("chm", "argmax", "mutual_nn")}
        print(mode, json.dumps(results[mode]))
    args.out.mkdir(parents=True, exist_ok=True)
    card = {
        "model": f"CHM head (psi kernels, 3 scales) on {args.model} {args.layer} (frozen), 112 px",
        "recipe": cfg.model_dump() | {"optimizer": "Adam", "loss": "squared L2 of normalised keypoints, mean per pair",
                                      "train_images": n_train, "val_images": len(full) - n_train, "val_pairs": 200},
        "test_pairs": "500 same-class and 500 same-genus/different-class pairs of SynthBirds test, >= 3 shared visible keypoints",
        "pck_test": results,
        "history": hist["history"],
        "train_seconds": round(hist["seconds"], 1),
        "total_seconds": round(time.perf_counter() - t0, 1),
        "torch": torch.__version__,
    }
    save_head(model, args.out / f"{args.name}.pt", meta={"pck_test": results}, backbone=args.model)
    card_name = "chm_card.json" if args.name == "chm_smallresnet" else f"{args.name}_card.json"
    atomic_write(args.out / card_name, lambda f: f.write(json.dumps(card, indent=2).encode()))
    print(json.dumps({"pck_test": results, "seconds": card["total_seconds"]}, indent=2))


if __name__ == "__main__":
    main()
