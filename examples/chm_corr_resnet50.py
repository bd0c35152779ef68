"""CHM-Corr on your own data, as the paper runs it: a ResNet-50 for kNN and patch embeddings,
the authors' CHMNet (two-stream ResNet-101, e.g. their ``pas_psi.pt``) for correspondences,
both with weights from files. Nothing is downloaded.

    python examples/chm_corr_resnet50.py --weights resnet50.pth --chm pas_psi.pt \\
        --gallery data/train --queries data/val --out chm-out

Needs xcorr-core and the chm_corr plugin (``pip install . plugins/chm_corr``). Images are
Resize 256 + CenterCrop 224 for the ResNet-50; the CHMNet sees the same crop resized to
``--chm-size`` (240) and ImageNet-normalised, so both use one frame. Writes
``chm-out/result.json`` (kNN vs CHM-Corr accuracy and every decision) and explanation figures.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
import torch.nn.functional as F

import xcorr_core as xc
from xcorr_core.data import ImageFolder
from xcorr_core.knn import explain_reranked, majority_vote
from xcorr_core.models import imagenet_normalize, torchvision_backbone
from xcorr_core.viz import save_figure
from xcorr_chm_corr import chm_corr_rerank, load_authors_checkpoint
from xcorr_chm_corr.rerank import image_cells


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", required=True, help="ResNet-50 state dict (.pth) for kNN and the layer4 embeddings")
    ap.add_argument("--num-classes", type=int, default=None, help="classifier size of that state dict, if not 1000")
    ap.add_argument("--chm", required=True, help="the authors' CHMNet state dict (e.g. pas_psi.pt)")
    ap.add_argument("--gallery", required=True, help="image folder root/<class>/<image> (the kNN training set)")
    ap.add_argument("--queries", required=True, help="image folder with the same class names")
    ap.add_argument("--out", default="chm-out")
    ap.add_argument("--shortlist", type=int, default=50, help="N, candidates re-ranked (paper: 50)")
    ap.add_argument("--k", type=int, default=20, help="neighbours that vote (paper: 20)")
    ap.add_argument("--chm-size", type=int, default=240, help="CHMNet input side (authors: 240)")
    ap.add_argument("--explain", type=int, default=2, help="explanation figures (first queries)")
    ap.add_argument("--batch-size", type=int, default=16)
    args = ap.parse_args(argv)

    model = torchvision_backbone("resnet50", args.weights, num_classes=args.num_classes, normalize=True)
    chm = load_authors_checkpoint(args.chm)
    norm = imagenet_normalize()
    gallery, queries = ImageFolder(args.gallery), ImageFolder(args.queries)
    if gallery.class_names != queries.class_names:
        raise SystemExit(f"class folders differ: {gallery.class_names} vs {queries.class_names}")
    spec = xc.PipelineSpec.parse({
        "features": {"pooled_layer": "layer4", "spatial_layer": "layer4", "batch_size": args.batch_size},
        "shortlist": args.shortlist, "decision": {"k": args.k}, "explainers": [], "metrics": [{"name": "top1_accuracy"}],
    })
    pipe = xc.Pipeline(spec, model=model, work_dir=Path(args.out) / "gallery")
    pipe.fit(gallery)  # the kNN index; CHM-Corr below re-ranks its shortlists
    knn = pipe.run(queries, name="queries").methods["knn"]

    def chm_view(img: torch.Tensor) -> torch.Tensor:
        return norm(F.interpolate(img[None], size=(args.chm_size, args.chm_size), mode="bilinear", align_corners=False)[0])

    fx = xc.FeatureExtractor(model, ["layer4"])
    preds, decisions, figs = [], [], []
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for i in range(len(queries)):
        img = queries[i][0]
        feats = fx(img[None])
        res = pipe.index.search(feats.pooled["layer4"], args.shortlist)  # type: ignore[union-attr]
        cand_imgs = torch.stack([gallery[int(g)][0] for g in res.ids[0]])
        cand_maps = fx(cand_imgs).maps["layer4"]
        qmap = feats.maps["layer4"][0]
        cells = image_cells(chm, chm_view(img), torch.stack([chm_view(c) for c in cand_imgs]), tuple(qmap.shape[-2:]))
        scored = chm_corr_rerank(None, qmap, cand_maps, cells=cells)
        order = torch.argsort(scored.scores[0], descending=True, stable=True)
        top = order[: args.k]
        pred, votes = majority_vote(res.labels[:, top], int(gallery.labels.max()) + 1)
        preds.append(int(pred[0]))
        decisions.append({"query": str(queries.paths[i]), "target": int(queries.labels[i]), "knn": int(knn.predictions[i]),
                          "chm_corr": int(pred[0]), "confidence": int(votes[0]) / args.k,
                          "reranked_ids": res.ids[0][order].tolist(), "scores": scored.scores[0][order].tolist()})
        if i < args.explain:
            case = xc.Case(query_id=i, prediction=int(pred[0]), confidence=int(votes[0]) / args.k, neighbour_ids=res.ids[0][top],
                           neighbour_labels=res.labels[0][top], neighbour_scores=scored.scores[0][top], method="chm_corr",
                           ranking=xc.Ranking(order=order, scores=scored.scores[0], pairs=scored.pairs[0], weights=scored.weights[0]),
                           shortlist_ids=res.ids[0], grid=tuple(qmap.shape[-2:]))
            exp = explain_reranked(case, method="chm_corr")
            fig = exp.plot(images=lambda gid: gallery[gid][0], query=img, class_names=gallery.class_names, target=int(queries.labels[i]))
            save_figure(fig, out / f"chm_corr_query{i}.png")
            figs.append(f"chm_corr_query{i}.png")
    targets = queries.labels
    summary = {"knn": float((knn.predictions == targets).float().mean()),
               "chm_corr": float((torch.tensor(preds) == targets).float().mean()), "n": len(queries), "figures": figs}
    (out / "result.json").write_text(json.dumps({"summary": summary, "decisions": decisions}, indent=2))
    print(json.dumps(summary, indent=2))
    return summary


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    main()
