"""``xcorr demo``'s section "The same explanations on a ViT": the shipped small ViT (``birds_vit``) in
place of the SmallResNet, with kNN and the installed re-rankers over its 7 x 7 patch tokens (EMD-Corr;
CHM-Corr with the CHM head trained for this ViT), Grad-CAM at a block and a PAIR-X pair figure.

The core never imports a plugin: components are created through the registry by name, and a part whose
plugin is not installed is skipped with the ``pip install`` that adds it. Depends on the core only.
"""
from __future__ import annotations

import copy
import html
from typing import Any

import torch
from torch import nn

from . import registry
from .demo_report import DemoSection, demo_spec_path, html_table
from .models import load_pretrained, model_card
from .pipeline import Pipeline
from .spec import PipelineSpec
from .viz import save_figure

__all__ = ["vit_section", "VIT_LAYER", "VIT_EXPLAIN_LAYER"]

#: the last block: its tokens are the cells kNN and the re-rankers compare
VIT_LAYER = "encoder.layers.encoder_layer_3"
#: the block before it: with CLS-token pooling the last block's patch tokens never reach the logits,
#: so gradient-based explanations look one block earlier
VIT_EXPLAIN_LAYER = "encoder.layers.encoder_layer_2"


def _embedding_model(vit: nn.Module) -> nn.Module:
    """The ViT as an embedding model for PAIR-X: its CLS token after the final LayerNorm (a copy, head removed)."""
    emb = copy.deepcopy(vit)
    emb.heads = nn.Identity()
    return emb.eval()


def vit_section(ctx: Any) -> DemoSection:
    vit = load_pretrained("birds_vit")
    installed = {c.name for c in registry.components("reranker")}
    rerankers: list[dict[str, Any]] = []
    if "emd_corr" in installed:
        rerankers.append({"name": "emd_corr"})
    if "chm_corr" in installed:
        rerankers.append({"name": "chm_corr", "config": {"weights": "birds_vit"}})
    base = PipelineSpec.from_file(demo_spec_path())
    spec = PipelineSpec.parse({"features": {"model": "birds_vit", "pooled_layer": VIT_LAYER, "spatial_layer": VIT_LAYER},
                               "shortlist": base.shortlist, "decision": base.decision.model_dump(), "rerankers": rerankers,
                               "explainers": [], "seed": base.seed})
    pipe = Pipeline(spec, model=vit).fit(ctx.birds_train, progress=ctx.progress)
    test = ctx.birds_test["test"]
    res = pipe.run(test, name="test", progress=ctx.progress)
    layout = pipe.extractor(test.image(0)[None]).layouts[VIT_LAYER]
    report: dict[str, Any] = {"layer": VIT_LAYER, "layout": layout.model_dump(), "methods": pipe.methods, "test": {}}
    rows = []
    knn_right = res.methods["knn"].predictions == res.methods["knn"].targets
    for m, mr in res.methods.items():
        acc = mr.metrics["top1_accuracy"]
        right = mr.predictions == mr.targets
        fixed, broken = int((right & ~knn_right).sum()), int((~right & knn_right).sum())
        report["test"][m] = {"top1_accuracy": acc.value, "ci95": list(acc.ci or ()), "fixes_knn": fixed, "breaks_knn": broken,
                             "ms_per_query": mr.seconds * 1000 / res.n}
        rows.append([m, f"{acc.value:.1%}", "[{:.1%}, {:.1%}]".format(*acc.ci), "" if m == "knn" else f"{fixed} / {broken}",
                     f"{mr.seconds * 1000 / res.n:.1f}"])
    missing = [f"<code>pip install plugins/{p}</code> ({what})" for p, what, have in
               (("emd_corr", "EMD-Corr", "emd_corr" in installed), ("chm_corr", "CHM-Corr", "chm_corr" in installed))
               if not have]
    figs: list[str] = []
    notes: list[str] = []
    explainers = {c.name for c in registry.components("explainer")}
    show = list(range(6))
    images = torch.stack([test.image(i) for i in show])
    if "gradcam" in explainers:
        gc = registry.create("explainer", "gradcam", layer=VIT_EXPLAIN_LAYER)
        with torch.enable_grad():
            exp = gc.explain_images(vit, images)
        rel = "figures/vit_gradcam.png"
        save_figure(exp.plot(images, class_names=ctx.birds_train.class_names), ctx.out / rel)
        figs.append(rel)
        report["gradcam_layer"] = VIT_EXPLAIN_LAYER
        notes.append(f"Grad-CAM (first figure): six test images, the ViT's top-1 class, at {VIT_EXPLAIN_LAYER}, the block before "
                     "the last: with CLS-token pooling the last block's patch tokens never reach the logits, so Grad-CAM there "
                     "is zero.")
    else:
        missing.append("<code>pip install plugins/cgc</code> (Grad-CAM)")
    if "pairx" in explainers:
        knn = res.methods["knn"]
        q = next((i for i in range(res.n) if int(knn.predictions[i]) == int(knn.targets[i])), 0)
        nb = int(knn.neighbour_ids[q, 0])
        px = registry.create("explainer", "pairx", layer=VIT_EXPLAIN_LAYER, n=10)
        with torch.enable_grad():
            pexp = px.explain_pair(_embedding_model(vit), test.image(q), ctx.birds_train.image(nb))
        rel = "figures/vit_pairx.png"
        save_figure(pexp.plot(images=(test.image(q), ctx.birds_train.image(nb))), ctx.out / rel)
        figs.append(rel)
        report["pairx"] = {"query": q, "neighbour": nb, "similarity": pexp.similarity, "matches": int(pexp.matches.shape[0]),
                           "engine": pexp.meta.get("lrp_engine")}
        notes.append(f"PAIR-X: test image {q} and its nearest gallery image {nb} (cosine {pexp.similarity:.3f} of the CLS "
                     f"embeddings), {pexp.matches.shape[0]} matches at {VIT_EXPLAIN_LAYER}, relevance by conservative "
                     "propagation (attention and LayerNorm scales held constant, gradient x input).")
    else:
        missing.append("<code>pip install plugins/pairx</code> (PAIR-X)")
    card = model_card().get("birds_vit", {})
    trained = (f"{card['test_accuracy_clean']:.1%} top-1 as a classifier on SynthBirds test" if "test_accuracy_clean" in card
               else "trained by scripts/train_models.py")
    body = (f"<p>The shipped ViT (torchvision VisionTransformer, patch 16 at 112 px, 4 blocks of width 96; {trained}) in place "
            f"of the SmallResNet: its block <code>{VIT_LAYER}</code> outputs 1 CLS + 49 patch tokens, which the core reads as a "
            "7 x 7 grid of 96-d cells (the CLS token is the kNN vector); the same spec's re-rankers then compare cells as on the "
            "CNN. CHM-Corr uses a CHM head trained for this ViT's cells.</p>"
            + html_table(rows, ["method", "top-1 (SynthBirds test)", "95% CI (Wilson)", "kNN's errors fixed / right answers broken",
                                "ms / query"])
            + "".join(f"<p>{n}</p>" for n in notes)
            + (f"<p>Skipped: {', '.join(missing)}.</p>" if missing else ""))
    report["skipped"] = [html.unescape(m.replace("<code>", "").replace("</code>", "")) for m in missing]
    return DemoSection(title="The same explanations on a ViT", report=report, figures=figs, html=body)
