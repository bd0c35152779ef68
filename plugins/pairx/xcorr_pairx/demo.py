"""The plugin's section of ``xcorr demo``: PAIR-X on SynthHerd with the shipped
re-identification model — metrics over top-10 gallery pairs (balanced), and the figures of one correct
and one incorrect pair."""
from __future__ import annotations

import html
import json
from typing import Any

from xcorr_core.demo import DemoSection

from .explain import explain_pair
from .study import aggregate, evaluate_pairs, select_pairs


def pairx_section(ctx: Any) -> DemoSection:
    herd, model = ctx.herd_test, ctx.herd_model
    images = herd.images.float() / 255
    queries = [i for i in range(len(herd)) if i % herd.photos == 0]
    gallery = [i for i in range(len(herd)) if i % herd.photos != 0]
    pairs = select_pairs(model, images, herd.labels, queries, gallery, k=10, balance=True)
    records = evaluate_pairs(model, herd.image, pairs, layer="layer3", true_homography=herd.true_homography, progress=ctx.progress)
    agg = aggregate(records)
    figs = []
    for want, tag in ((True, "correct"), (False, "incorrect")):
        pick = next((p for p in pairs if p[4] == want), None)
        if pick is None:
            continue
        q, g, r, sim, _ = pick
        exp = explain_pair(model, herd.image(q), herd.image(g), layer="layer3", n=20)
        exp.meta["title"] = f"{tag} pair: query photo {q} vs gallery photo {g} (rank {r + 1})"
        figs.append(ctx.save_figure(exp.plot(image_a=herd.image(q), image_b=herd.image(g)), f"pairx_{tag}"))
    summary = {k: v for k, v in agg.items() if k not in ("residual_score", "coverage")}
    for key in ("residual_score", "coverage"):
        summary[key] = {k: v for k, v in agg[key].items() if k != "bins"}
    body = ("<p>SynthHerd test: the first photo of each individual queries the others; its top-10 gallery matches under the "
            "shipped embedding make the pairs (as many correct as incorrect, seeded). Per pair, PAIR-X at layer3 (14x14 grid): the inverted residual mean against a "
            "SIFT + RANSAC homography (0 when none is found) and the relevance-weighted match coverage; then Spearman rho with "
            "the model's cosine and the binned Bhattacharyya separability Delta of correct vs incorrect pairs. For correct "
            "pairs the matches are also checked against the true homography (mean residual in pixels).</p>"
            f"<pre>{html.escape(json.dumps(summary, indent=2))}</pre>")
    return DemoSection(title="PAIR-X on SynthHerd", report={"aggregate": agg, "pairs": [r.model_dump() for r in records]},
                       figures=figs, html=body)
