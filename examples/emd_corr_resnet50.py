"""EMD-Corr on your own data: a torchvision ResNet-50 with weights from a file, an image
folder as gallery, another as queries. Nothing is downloaded.

    python examples/emd_corr_resnet50.py --weights resnet50.pth --gallery data/train --queries data/val --out emd-out

Needs xcorr-core and the emd_corr plugin (``pip install . plugins/emd_corr``). Writes
``emd-out/result.json`` (kNN vs EMD-Corr accuracy, every decision) and explanation figures.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

import xcorr_core as xc
from xcorr_core.data import ImageFolder
from xcorr_core.models import torchvision_backbone
from xcorr_core.viz import save_figure


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", required=True, help="ResNet-50 state dict (.pth), e.g. your fine-tuned model")
    ap.add_argument("--num-classes", type=int, default=None, help="classifier size of that state dict, if not 1000")
    ap.add_argument("--gallery", required=True, help="image folder root/<class>/<image> (the kNN training set)")
    ap.add_argument("--queries", required=True, help="image folder with the same class names")
    ap.add_argument("--out", default="emd-out")
    ap.add_argument("--shortlist", type=int, default=50, help="N, candidates re-ranked (paper: 50)")
    ap.add_argument("--k", type=int, default=20, help="neighbours that vote (paper: 20)")
    ap.add_argument("--explain", type=int, default=2, help="explanation figures of right and of wrong decisions")
    ap.add_argument("--batch-size", type=int, default=16)
    args = ap.parse_args(argv)

    # Resize 256 + CenterCrop 224, images in [0, 1]; the model normalises them itself
    model = torchvision_backbone("resnet50", args.weights, num_classes=args.num_classes, normalize=True)
    gallery, queries = ImageFolder(args.gallery), ImageFolder(args.queries)
    if gallery.class_names != queries.class_names:
        raise SystemExit(f"class folders differ: {gallery.class_names} vs {queries.class_names}")
    spec = xc.PipelineSpec.parse({
        "features": {"pooled_layer": "layer4", "spatial_layer": "layer4", "batch_size": args.batch_size},
        "shortlist": args.shortlist, "decision": {"k": args.k},
        "rerankers": [{"name": "emd_corr"}],  # eps 0.05, L = 5 pairs, the authors' stopping rule
        "explainers": [{"name": "emd_corr"}],
        "metrics": [{"name": "top1_accuracy"}, {"name": "explanation_diversity"}],
        "explain": {"correct": args.explain, "wrong": args.explain},
    })
    pipe = xc.Pipeline(spec, model=model, work_dir=Path(args.out) / "gallery")
    pipe.fit(gallery)  # index (faiss) + layer4 maps on disk (float16, memory-mapped)
    res = pipe.run(queries, name="queries")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for exp in res.methods["emd_corr"].explanations:
        i = int(exp.query_id)
        fig = exp.plot(images=lambda gid: gallery[gid][0], query=queries[i][0], class_names=gallery.class_names,
                       target=int(queries.labels[i]))
        save_figure(fig, out / f"emd_corr_query{i}.png")
    (out / "result.json").write_text(res.to_json())
    summary = res.summary()
    print(json.dumps(summary, indent=2))
    return summary


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    main()
