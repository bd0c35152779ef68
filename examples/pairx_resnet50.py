"""PAIR-X on your own re-identification model: a torchvision ResNet-50 with weights from a file
(e.g. a metric-learning fine-tune whose output is the embedding), and two images.

    python examples/pairx_resnet50.py --weights reid_resnet50.pth --image-a a.jpg --image-b b.jpg --out pairx.png

Needs xcorr-core and the pairx plugin (``pip install . plugins/pairx``). Writes the PAIR-X
figure and ``<out>.json`` (matches, relevances, per-match pixel maps, similarity).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch

from xcorr_core.data import default_transform
from xcorr_core.data.real import open_rgb
from xcorr_core.models import torchvision_backbone
from xcorr_core.viz import save_figure
from xcorr_pairx import explain_pair


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", required=True, help="ResNet-50 state dict (.pth)")
    ap.add_argument("--embedding-dim", type=int, default=None, help="size of the model's final layer, if not 1000")
    ap.add_argument("--image-a", required=True)
    ap.add_argument("--image-b", required=True)
    ap.add_argument("--layer", default="layer3", help="intermediate layer to match (paper: a middle block)")
    ap.add_argument("--n", type=int, default=20, help="matches to keep")
    ap.add_argument("--out", default="pairx.png")
    args = ap.parse_args(argv)

    # Resize 256 + CenterCrop 224, images in [0, 1]; ImageNet normalisation baked into the model
    model = torchvision_backbone("resnet50", args.weights, num_classes=args.embedding_dim, normalize=True)
    tf = default_transform()
    a, b = tf(open_rgb(Path(args.image_a))), tf(open_rgb(Path(args.image_b)))
    exp = explain_pair(model, a, b, layer=args.layer, n=args.n)
    out = Path(args.out)
    save_figure(exp.plot(image_a=a, image_b=b), out)
    out.with_suffix(".json").write_text(exp.to_json())
    summary = {"similarity": exp.similarity, "matches": exp.all_matches.shape[0], "kept": exp.matches.shape[0],
               "seconds": round(sum(exp.timings.values()), 2)}
    print(summary)
    return summary


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    main()
