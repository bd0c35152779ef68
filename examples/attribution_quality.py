"""Score the pixel maps of several explainers with the cgc plugin's metrics, on SynthBirds.

    python examples/attribution_quality.py [--n 96] [--out attribution_quality.json]

Needs the cgc plugin; the PAIR-X and counterfactual rows need those plugins too (skipped if absent).
Every map explains the shipped SynthBirds classifier's decision on the first ``n`` clean test images
(as xcorr's plugins never import each other, this script is where they meet):

- Grad-CAM (the cgc plugin) at layer4 for the model's top-1 class (CGC's grad x act map is the same map
  behind a GAP + linear head);
- captum's Saliency (|gradient| summed over colours) and IntegratedGradients (|attribution|, 32 steps,
  black baseline) for the top-1 class;
- PAIR-X (pairx): the query paired with its nearest training image by pooled layer4 cosine, under the
  pooled-feature embedding; map = the sum of the query's 20 per-match pixel maps (it explains the
  similarity, not the class);
- counterfactual edit regions (scc_counterfactual, lambda = 0 as Goyal et al., so no auxiliary model):
  distractors = up to 5 training images the model assigns to its second-ranked class; map = the edited
  query cells, the first edit weighted highest;
- two references: a centred Gaussian and uniform noise.

Content Heatmap uses the SynthBirds bird boxes; insertion / deletion AUC follow the RISE protocol
(28 steps, blur substrate, probability of the clean top-1 class). Prints a Markdown table and writes JSON.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

import xcorr_core as xc
from xcorr_core.data import SynthBirds
from xcorr_core.models import load_pretrained


class PooledEmbedding(nn.Module):
    """The classifier's pooled layer4 features as an embedding (what the kNN pipelines compare)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.forward_features(x).mean((2, 3))


def captum_maps(model: nn.Module, x: torch.Tensor, targets: torch.Tensor) -> dict[str, torch.Tensor]:
    from captum.attr import IntegratedGradients, Saliency

    sal = Saliency(model).attribute(x, target=targets.tolist(), abs=True).sum(1)
    ig = torch.cat([IntegratedGradients(model).attribute(x[i:i + 16], target=targets[i:i + 16].tolist(), n_steps=32).abs().sum(1)
                    for i in range(0, len(x), 16)])
    return {"captum Saliency": sal.detach(), "captum IntegratedGradients": ig.detach()}


def pairx_maps(model: nn.Module, x: torch.Tensor, train: SynthBirds) -> torch.Tensor | None:
    try:
        from xcorr_pairx.explain import explain_pair
    except ImportError:
        return None
    emb = PooledEmbedding(model).eval()
    with torch.no_grad():
        g = F.normalize(emb(train.images.float() / 255), dim=1)
        q = F.normalize(emb(x), dim=1)
    nearest = (q @ g.T).argmax(1)
    maps = []
    for i in range(len(x)):
        exp = explain_pair(emb, x[i], train.images[int(nearest[i])].float() / 255, layer="model.layer3", n=20)
        maps.append(exp.pixel_maps_a.sum(0))
    return torch.stack(maps)


def counterfactual_maps(model: nn.Module, x: torch.Tensor, train: SynthBirds) -> torch.Tensor | None:
    try:
        from xcorr_scc_counterfactual import GoyalExplainer
    except ImportError:
        return None
    with torch.no_grad():
        logits = model(x)
        train_pred = torch.cat([model(train.images[i:i + 256].float() / 255).argmax(1) for i in range(0, len(train), 256)])
    second = logits.topk(2, dim=1).indices[:, 1]
    explainer = GoyalExplainer(GoyalExplainer.Config(distractors=5))
    maps = torch.zeros(len(x), *x.shape[-2:])
    for i in range(len(x)):
        ids = (train_pred == second[i]).nonzero().flatten()[:5]
        if len(ids) == 0:
            continue
        cf = explainer.explain_images(model, x[i], train.images[ids].float() / 255, target=int(second[i]))
        h, w = cf.grid
        cells = torch.zeros(h * w)
        for k, e in enumerate(cf.edits):
            cells[e.query_cell] = len(cf.edits) - k
        maps[i] = F.interpolate(cells.view(1, 1, h, w), size=x.shape[-2:], mode="nearest")[0, 0]
    return maps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=96)
    ap.add_argument("--out", type=Path, default=Path("attribution_quality.json"))
    args = ap.parse_args()
    torch.manual_seed(0)
    model = load_pretrained("birds").eval()
    test = SynthBirds("test", per_class=max(1, -(-args.n // 24)), progress=False)
    train = SynthBirds("train", per_class=60, progress=False)
    x, boxes = test.images[:args.n].float() / 255, test.boxes[:args.n]
    with torch.no_grad():
        top1 = model(x).argmax(1)
    maps: dict[str, torch.Tensor] = {}
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()  # CGC's grad x act map equals Grad-CAM behind this model's GAP + linear head: one row
    maps["Grad-CAM"] = xc.create("explainer", "gradcam").explain_images(model, x, top1).maps
    seconds["gradcam"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    maps |= captum_maps(model, x, top1)
    seconds["captum"] = time.perf_counter() - t0
    for name, fn in (("PAIR-X (sum of 20 match maps)", pairx_maps), ("counterfactual edits (Goyal, lambda 0)", counterfactual_maps)):
        t0 = time.perf_counter()
        m = fn(model, x, train)
        if m is not None:
            maps[name] = m
            seconds[name] = time.perf_counter() - t0
    yy, xx = torch.meshgrid(torch.arange(x.shape[-2]), torch.arange(x.shape[-1]), indexing="ij")
    c = (x.shape[-1] - 1) / 2
    maps["reference: centred Gaussian"] = torch.exp(-((yy - c) ** 2 + (xx - c) ** 2) / (2 * (x.shape[-1] / 4) ** 2)).expand(len(x), -1, -1).float()
    maps["reference: uniform noise"] = torch.rand(len(x), *x.shape[-2:], generator=torch.Generator().manual_seed(0))
    ch, ins, dele = (xc.create("metric", n) for n in ("content_heatmap", "insertion_auc", "deletion_auc"))
    rows = {}
    for name, m in maps.items():
        r_ch = ch.compute(maps=m, boxes=boxes)
        r_in = ins.compute(model=model, images=x, maps=m)
        r_de = dele.compute(model=model, images=x, maps=m)
        rows[name] = {k: {"value": r.value, "ci": r.ci, "n": r.n} for k, r in (("ch", r_ch), ("insertion", r_in), ("deletion", r_de))}
        print(f"{name}: CH {r_ch.value:.1f}, insertion {r_in.value:.3f}, deletion {r_de.value:.3f}", flush=True)
    args.out.write_text(json.dumps({"n": args.n, "rows": rows, "seconds": seconds}, indent=1))
    print("\n| explainer | Content Heatmap % | insertion AUC (higher better) | deletion AUC (lower better) |\n| --- | --- | --- | --- |")
    for name, r in rows.items():
        cell = lambda v, d: f"{v['value']:.{d}f} ± {(v['ci'][1] - v['ci'][0]) / 2:.{d}f}" if v["ci"] else f"{v['value']:.{d}f}"  # noqa: E731
        print(f"| {name} | {cell(r['ch'], 1)} | {cell(r['insertion'], 3)} | {cell(r['deletion'], 3)} |")


if __name__ == "__main__":
    main()
