"""The plugin's section of ``xcorr demo``: the shipped study's table (CE vs CGC vs CGC without
negatives, fine-tuned from the shipped SynthBirds classifier over seeds) and, live, Grad-CAM of the
shipped CE and CGC models side by side on the same test images with their Content Heatmap and
consistency. ``scripts/cgc_study.py`` trains and scores; the demo trains nothing.
"""
from __future__ import annotations

import math
import time
from typing import Any

import torch

from xcorr_core.demo import DemoSection, html_table

from .attribution import consistency, content_heatmap, insertion_deletion
from .components import GradCAMExplainer
from .figure import plot_curves, plot_heatmaps
from .pretrained import load_pretrained
from .study import METRIC_NAMES, MODE_NAMES, load_study, summarise
from .views import ViewsConfig, make_views

__all__ = ["cgc_section", "study_table"]


def _log(msg: str) -> None:
    print(f"[xcorr demo] {msg}", flush=True)


def _cell(v: tuple[float, float], digits: int) -> str:
    m, h = v
    if m != m:
        return "-"
    return f"{m:.{digits}f} ± {h:.{digits}f}" if h == h else f"{m:.{digits}f}"


def study_table(summary: dict[str, dict[str, Any]]) -> tuple[list[list[str]], list[str]]:
    """Rows and header of the study table (mean ± 95 % t half-width over seeds)."""
    keys = list(METRIC_NAMES)
    rows = [[MODE_NAMES[m], str(e["seeds"])] + [_cell(e[k], 1 if k.startswith("top1") or k == "ch" else 3) for k in keys]
            for m, e in summary.items()]
    return rows, ["model", "seeds"] + [METRIC_NAMES[k] for k in keys]


def cgc_section(ctx: Any) -> DemoSection:
    t0 = time.perf_counter()
    study = load_study()
    summary = summarise(study.get("runs", []))
    report: dict[str, Any] = {"study": summary, "study_config": study.get("config", {})}
    rows, header = study_table(summary)
    models = {"CE only": load_pretrained("ce"), "CE + CGC": load_pretrained("cgc")}
    test = ctx.birds_test["test"]
    x = test.images.float() / 255
    cam = GradCAMExplainer(GradCAMExplainer.Config(layer="layer4"))
    live, maps_shown, curves = [], {}, {}
    views = make_views(x, ViewsConfig(size=x.shape[-1], resize_ratio=1.0), torch.Generator().manual_seed(123))
    show = torch.arange(0, len(test), max(1, len(test) // 6))[:6]
    for name, model in models.items():
        true_maps = cam.explain_images(model, x, test.labels).maps  # [N, H, W] for the true class
        ch = content_heatmap(true_maps, test.boxes)
        orig = cam.explain_images(model, views.orig)  # the orig view's top-1, explained on both views
        cons = consistency(cam.explain_images(model, views.aug, orig.targets).maps, orig.maps, views.boxes, views.flips)
        top = cam.explain_images(model, x[:48]).maps  # insertion curve on the first 48 images
        auc, curve, _ = insertion_deletion(model, x[:48], top, mode="insertion")
        curves[f"{name} (AUC {float(auc.mean()):.3f})"] = curve.mean(0)  # the curves nearly coincide: the AUC tells them apart
        with torch.no_grad():
            acc = float((model(x).argmax(1) == test.labels).float().mean())
        finite = ch[torch.isfinite(ch)]
        live.append([name, f"{100 * acc:.1f}", f"{float(finite.mean()):.1f}", f"{float(cons.nanmean()):.3f}", f"{float(auc.mean()):.3f}"])
        report[name] = {"top1_clean": acc, "ch": float(finite.mean()), "consistency": float(cons.nanmean()), "insertion_auc_48": float(auc.mean())}
        maps_shown[name] = (true_maps[show], ch[show])
        _log(f"CGC demo, {name}: top-1 {acc:.1%}, Content Heatmap {float(finite.mean()):.1f} %, consistency {float(cons.nanmean()):.3f}")
    fig = plot_heatmaps(x[show], {k: v[0] for k, v in maps_shown.items()}, targets=test.labels[show], class_names=list(test.class_names),
                        boxes=test.boxes[show], notes={k: [f"CH {float(c):.0f} %" if not math.isnan(float(c)) else "CH -" for c in v[1]]
                                                      for k, v in maps_shown.items()})
    figs = [ctx.save_figure(fig, "cgc_heatmaps"),
            ctx.save_figure(plot_curves(curves, "insertion, Grad-CAM order (48 clean test images)"), "cgc_insertion")]
    report["seconds"] = time.perf_counter() - t0
    cfg = study.get("config", {})
    body = ("<p>Contrastive Grad-CAM Consistency (Pillai et al.): the shipped SynthBirds classifier fine-tuned with the same "
            f"seeds, batches, views and budget ({cfg.get('steps', '?')} steps of {cfg.get('batch', '?')} images, SGD) with CE on the "
            "training, orig and aug views only, adding the CGC term (InfoNCE over Grad-CAM maps, lambda 0.5, t 0.5), or adding "
            "its no-negatives (MSE) ablation. Mean &plusmn; 95% t-interval over seeds; CH = Grad-CAM mass inside the bird's box "
            "for the true class; insertion / deletion AUC = RISE protocol (28 steps, blur substrate) on the clean test set; "
            "consistency = cosine between the aug view's Grad-CAM and the orig view's moved by the same crop and flip. "
            "Read by the demo from the shipped study file; nothing is trained here.</p>"
            + html_table(rows, header)
            + "<p>Live on the clean test set, the shipped seed-0 models (Grad-CAM at layer4):</p>"
            + html_table(live, ["model", "top-1 clean %", "Content Heatmap %", "consistency", "insertion AUC (48 images)"])
            + "<p>Figures: the same test images under both models (green: the bird's box; CH under each map), and the mean "
              "insertion curves.</p>")
    return DemoSection(title="CGC on SynthBirds", report=report, figures=figs, html=body)
