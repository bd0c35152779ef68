"""The plugin's section of ``xcorr demo``: the shipped ProtoKNN on SynthBirds clean, sticker and
style — k-NN over profiles for k = 1, 3, 5, 10 beside plain kNN on the classifier's pooled
features and a ProtoPNet-style linear head on the same profiles (Wilson intervals) — prototype
variance, duplicates and part purity, and two "this looks like it rather than that" figures.
The seeded study (with and without the auxiliary loss, the cluster-loss ablation rows) is
trained by ``scripts/protoknn_study.py``; the demo shows its shipped results file, it trains nothing.
"""
from __future__ import annotations

import time
from typing import Any

import torch
import torch.nn.functional as F

from xcorr_core.stats import wilson_interval
from xcorr_core.data import PART_NAMES, SynthBirds
from xcorr_core.demo import DemoSection, html_table, right_and_wrong
from xcorr_core.index import GalleryIndex
from xcorr_core.knn import majority_vote

from .components import PrototypePartPurity, ProtoKNNSetup
from .projection import encode
from .study import ROW_NAMES, load_study, summarise

__all__ = ["protoknn_section", "linear_head"]

KS = (1, 3, 5, 10)


def _log(msg: str) -> None:
    print(f"[xcorr demo] {msg}", flush=True)


def linear_head(profiles: torch.Tensor, labels: torch.Tensor, *, steps: int = 300, lr: float = 0.01, seed: int = 0) -> torch.nn.Linear:
    """A ProtoPNet-style last layer on frozen profiles: logits = W s + b, trained by cross-entropy
    (full batch, Adam). ProtoPNet's class-to-prototype initialisation does not apply: ProtoKNN's
    prototypes belong to no class."""
    torch.manual_seed(seed)
    head = torch.nn.Linear(profiles.shape[1], int(labels.max()) + 1)
    opt = torch.optim.Adam(head.parameters(), lr=lr)
    with torch.enable_grad():
        for _ in range(steps):
            loss = F.cross_entropy(head(profiles), labels)
            opt.zero_grad()
            loss.backward()
            opt.step()
    return head.eval()



def _acc(pred: torch.Tensor, targets: torch.Tensor) -> tuple[float, tuple[float, float]]:
    ok = pred == targets
    return float(ok.float().mean()), wilson_interval(int(ok.sum()), ok.numel())


def protoknn_section(ctx: Any) -> DemoSection:
    t0 = time.perf_counter()
    setup = ProtoKNNSetup.shipped()
    train = SynthBirds("train")  # the gallery the shipped model's projection refers to
    clf = setup.classifier
    head = linear_head(clf.profiles, clf.labels)
    pooled_index = GalleryIndex(ctx.birds_model.fc.in_features, "cosine")
    pooled_index.add(ctx.birds_maps(train).mean((2, 3)), train.labels)  # the classifier's maps, shared with other sections
    rows, report = [], {"by_dataset": {}}
    profiles: dict[str, torch.Tensor] = {}
    for name, ds in ctx.birds_test.items():
        prof, _, _ = encode(setup.model, ds.images)
        profiles[name] = prof
        entry: dict[str, Any] = {"n": len(ds)}
        pooled = pooled_index.search(ctx.birds_maps(ds).mean((2, 3)), max(KS))
        for k in KS:
            pk = _acc(clf.predict(prof, k).predictions, ds.labels)
            kn = _acc(majority_vote(pooled.labels[:, :k], clf.num_classes)[0], ds.labels)
            entry[f"protoknn_k{k}"], entry[f"knn_pooled_k{k}"] = pk, kn
        lin = _acc(head(prof).argmax(1), ds.labels)
        entry["linear_head"] = lin
        report["by_dataset"][name] = entry
        rows.append([name] + [f"{entry[f'protoknn_k{k}'][0]:.1%}" for k in KS] + [f"{entry[f'knn_pooled_k{k}'][0]:.1%}" for k in (1, 10)]
                    + [f"{lin[0]:.1%}"])
        _log(f"ProtoKNN on {name}: " + ", ".join(f"k={k} {entry[f'protoknn_k{k}'][0]:.1%}" for k in KS)
             + f"; pooled kNN k=1 {entry['knn_pooled_k1'][0]:.1%}; linear head {lin[0]:.1%}")
    purity = PrototypePartPurity().compute(profiles=clf.profiles, peak_cells=setup.cells, keypoints=train.keypoints,
                                           image_size=tuple(train.images.shape[-2:]), grid=setup.grid)
    proj = setup.projection
    report |= {"prototype_variance_before_projection": proj.variance_before, "prototype_variance": proj.variance_after,
               "projection_duplicates": proj.duplicates, "part_purity": purity.value, "purity_background_share": purity.details["background_share"]}
    # explanations: one correct and one wrong decision on the clean test set
    test = ctx.birds_test["test"]
    pred = clf.predict(profiles["test"], 1).predictions
    figs = []
    for kind, idx in right_and_wrong(pred, test.labels):
        for i in idx:
            exp = setup.explain(test.image(i), query_id=i)
            figs.append(ctx.save_figure(exp.plot(**ctx.birds_plot_args(test, i, train)), f"protoknn_{kind}_{i}"))
    study = summarise(load_study())
    report["study"] = study
    study_html = ""
    if study:
        def cell(v: tuple[float, float]) -> str:
            return f"{100 * v[0]:.1f} &plusmn; {100 * v[1]:.1f}" if v[1] == v[1] else f"{100 * v[0]:.1f}"

        srows = "".join(f"<tr><td>{ROW_NAMES[r]}</td><td>{e['seeds']}</td>" + "".join(
            f"<td>{cell(e[k])}</td>" for k in ("clean k=1", "clean k=5", "sticker k=1", "style k=1", "clean linear_head"))
            + f"<td>{e['variance'][0]:.3f} &plusmn; {e['variance'][1]:.3f}</td></tr>" for r, e in study.items())
        study_html = ("<p>Seeded study (scripts/protoknn_study.py; each run trains from the shipped SmallResNet with the same "
                      f"budget, {', '.join(map(str, study[next(iter(study))]['steps']))} steps; mean &plusmn; 95% t-interval over seeds, %):</p>"
                      "<table><thead><tr><th>row</th><th>seeds</th><th>clean k=1</th><th>clean k=5</th><th>sticker k=1</th>"
                      "<th>style k=1</th><th>linear head (clean)</th><th>prototype variance</th></tr></thead><tbody>"
                      + srows + "</tbody></table>")
    report["seconds"] = time.perf_counter() - t0
    body = ("<p>The shipped ProtoKNN (SmallResNet layer4 &rarr; 1x1 add-on D = 64, M = 128 prototypes spread on the sphere, "
            "trained with the margin task loss, the cluster loss and the auxiliary margin loss, then projected onto training "
            "patches). Top-1 of the k-NN vote over profiles (squared Euclidean), beside plain kNN on the classifier's pooled "
            "layer4 features and a ProtoPNet-style linear head trained on the same profiles; gallery = SynthBirds train.</p>"
            + html_table(rows, ["data set"] + [f"ProtoKNN k={k}" for k in KS] + ["pooled kNN k=1", "pooled kNN k=10", "linear head"])
            + f"<p>Prototype variance {proj.variance_before:.3f} before projection, {proj.variance_after:.3f} after; "
              f"{proj.duplicates} of {clf.profiles.shape[1]} prototypes share a patch with another; part purity of the top-10 "
              f"activations {purity.value:.1%} ({purity.details['background_share']:.0%} of them in cells holding no visible keypoint; parts: "
            + ", ".join(PART_NAMES) + ").</p>" + study_html + "<p>Figures: each row one of the 3 prototypes that most favour the predicted class: its "
              "source patch, then where it peaks in the query, in the nearest training image of the predicted class (this looks like "
              "it) and in the nearest of the contrast class (rather than that); delta = its share of d_an&sup2; - d_ap&sup2;.</p>")
    return DemoSection(title="ProtoKNN on SynthBirds", report=report, figures=figs, html=body)
