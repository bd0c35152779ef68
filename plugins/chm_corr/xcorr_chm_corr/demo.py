"""The plugin's section of ``xcorr demo``: the shipped CHM's PCK beside two baselines, the
paper's headline (kNN vs EMD-Corr vs CHM-Corr vs CHM-Corr+ on SynthBirds clean, sticker and
style, Wilson intervals, exact McNemar tests against kNN), and CHM-Corr explanations of one
correct and one wrong decision.

CHM-Corr and CHM-Corr+ share their CHMNet transfers (only the mask differs), so the section
computes the transfers once per query and scores both; it reads the demo pipeline's gallery
index, spatial store and shortlists, so every method sees the same 50 candidates.
"""
from __future__ import annotations

import html
import os
import time
from typing import Any

import torch

import xcorr_core as xc
from xcorr_core.stats import mcnemar_exact, wilson_interval
from xcorr_core.data import PART_NAMES
from xcorr_core.data.synth_birds import CLASS_GENUS
from xcorr_core.demo import DemoSection, html_table, right_and_wrong
from xcorr_core.knn import explain_reranked, majority_vote

from .pretrained import load_pretrained
from .rerank import chm_cells
from .scoring import cc_mask, chm_corr_scores, keypoint_mask
from .training import evaluate_pck, keypoint_pairs

__all__ = ["chm_corr_section", "PLUS_PARTS", "chm_corr_decisions"]

#: SynthBirds parts standing in for CHM-Corr+'s CUB parts (beak, belly, tail, right wing, right leg)
PLUS_PARTS: tuple[str, ...] = ("beak", "belly", "tail", "wing", "leg")
#: queries per data set in the demo (the first ones: 3 per class); ``XCORR_CHM_DEMO_QUERIES=all`` for every query
DEMO_QUERIES = 72


def _demo_queries(n: int) -> int:
    raw = os.environ.get("XCORR_CHM_DEMO_QUERIES", str(DEMO_QUERIES))
    if raw == "all":
        return n
    if not raw.isdigit() or int(raw) < 1:
        raise ValueError(f"XCORR_CHM_DEMO_QUERIES must be a positive integer or 'all', got {raw!r}")
    return min(n, int(raw))


def _log(msg: str) -> None:
    print(f"[xcorr demo] {msg}", flush=True)


def chm_corr_decisions(pipe: xc.Pipeline, data: Any, chm: Any, *, keypoints: torch.Tensor | None = None,
                       size: tuple[int, int] = (112, 112), batch: int = 16) -> dict[str, dict[str, torch.Tensor]]:
    """CHM-Corr (and, with ``keypoints`` `[Q, P, 3]` in pixels of images of ``size``, CHM-Corr+) decisions over ``data`` with the
    fitted pipeline's index and store: predictions, top-k ids/labels/scores, the shortlist and,
    for every query, the scored pairs and weights of all N candidates."""
    f, k, n_short = pipe.spec.features, pipe.spec.decision.k, pipe.spec.shortlist
    assert pipe.index is not None and pipe.store is not None, "fit the pipeline first"
    pooled, maps = [], []
    for _, feats in pipe.encode(data, progress=False, desc="queries"):
        pooled.append(feats.pooled[f.pooled_layer])
        maps.append(feats.maps[f.spatial_layer])
    q, qmaps = torch.cat(pooled), torch.cat(maps)
    res = pipe.index.search(q, n_short)
    h, w = qmaps.shape[-2:]
    plus_mask = None
    if keypoints is not None:
        parts = [PART_NAMES.index(p) for p in PLUS_PARTS]
        plus_mask = torch.stack([keypoint_mask(kp, size, (h, w), parts) for kp in keypoints])  # type: ignore[arg-type]
    out: dict[str, dict[str, list[torch.Tensor]]] = {m: {"scores": [], "pairs": [], "weights": []} for m in ("chm_corr", "chm_corr_plus")}
    # every gallery image's scale features once (a candidate recurs in many shortlists), in near-equal parts of
    # <= 512: the same values as per chunk of 25 candidates (the convolutions agree bit for bit at batches >= 25 here)
    used = torch.unique(res.positions)
    with torch.no_grad():
        parts_ = [chm.learner.scale_features(pipe.store.get(p)) for p in torch.tensor_split(used, -(-len(used) // 512))]
    gallery = [torch.cat(p) for p in zip(*parts_)]
    row = torch.full((int(used.max()) + 1,), -1, dtype=torch.long)
    row[used] = torch.arange(len(used))
    for s in range(0, q.shape[0], batch):
        idx = slice(s, min(q.shape[0], s + batch))
        cands = pipe.store.get(res.positions[idx].flatten()).unflatten(0, (-1, n_short))
        rows = row[res.positions[idx]]
        cells = chm_cells(chm, qmaps[idx], cands, cand_scales=[g[rows] for g in gallery])
        masks = {"chm_corr": (cc_mask(qmaps[idx], cands, 0.55), "top")}
        if plus_mask is not None:
            masks["chm_corr_plus"] = (plus_mask[idx][:, None, :].expand_as(cells).float(), "all")
        for m, (mask, reduce) in masks.items():
            sc, pr, wt = chm_corr_scores(qmaps[idx], cands, cells, mask, reduce=reduce)  # type: ignore[arg-type]
            out[m]["scores"].append(sc)
            out[m]["pairs"].append(pr)
            out[m]["weights"].append(wt)
    decisions: dict[str, dict[str, torch.Tensor]] = {}
    for m, parts_ in out.items():
        if not parts_["scores"]:
            continue
        scores = torch.cat(parts_["scores"])
        order = torch.argsort(scores, dim=1, descending=True, stable=True)
        top = order[:, :k]
        labels = res.labels.gather(1, top)
        pred, votes = majority_vote(labels, pipe.num_classes)
        decisions[m] = {"predictions": pred, "confidences": votes.float() / k, "ids": res.ids.gather(1, top), "labels": labels,
                        "top_scores": scores.gather(1, top), "scores": scores, "pairs": torch.cat(parts_["pairs"]),
                        "weights": torch.cat(parts_["weights"]), "shortlist": res.ids}
    return decisions


def _case(d: dict[str, torch.Tensor], i: int, method: str, grid: tuple[int, int]) -> xc.Case:
    ranking = xc.Ranking(order=torch.argsort(d["scores"][i], descending=True, stable=True), scores=d["scores"][i],
                         pairs=d["pairs"][i], weights=d["weights"][i])
    return xc.Case(query_id=i, prediction=int(d["predictions"][i]), confidence=float(d["confidences"][i]), neighbour_ids=d["ids"][i],
                   neighbour_labels=d["labels"][i], neighbour_scores=d["top_scores"][i], ranking=ranking,
                   shortlist_ids=d["shortlist"][i], method=method, grid=grid)


def _pck_rows(chm: Any, test: Any, feats: torch.Tensor) -> tuple[list[list[str]], dict[str, Any]]:
    """PCK rows on ``test`` from its backbone maps ``feats`` `[N, C, h, w]`."""
    genus = torch.tensor(CLASS_GENUS)[test.labels]
    g = torch.Generator().manual_seed(321)
    rows, report = [], {}
    for mode, label in (("class", "same class"), ("genus", "same genus, other class")):
        pairs = keypoint_pairs(test.labels, genus, test.keypoints, 300, mode=mode, generator=g)  # type: ignore[arg-type]
        report[mode] = {}
        for method, name in (("chm", "CHM (shipped)"), ("argmax", "argmax of raw correlation"), ("mutual_nn", "mutual NN (core)")):
            r = evaluate_pck(chm, feats, test.keypoints, test.boxes, pairs, test.images.shape[-1], method=method)  # type: ignore[arg-type]
            report[mode][method] = r
            rows.append([label, name] + [f"{100 * r[a]:.1f}" for a in ("pck@0.05", "pck@0.1", "pck@0.15")])
    return rows, report


def chm_corr_section(ctx: Any) -> DemoSection:
    pipe = ctx.pipeline
    if pipe is None or not ctx.results:
        raise RuntimeError("the core classification section did not produce results to compare")
    t0 = time.perf_counter()
    chm = load_pretrained()
    grid = tuple(pipe.store.map_shape[1:])
    # the shipped CHM's backbone is the shipped classifier: its maps are the demo's shared ones
    pck_rows, pck_report = _pck_rows(chm, ctx.birds_test["test"], ctx.birds_maps(ctx.birds_test["test"]))
    _log(f"CHM PCK on SynthBirds test pairs: {time.perf_counter() - t0:.1f} s")
    report: dict[str, Any] = {"pck": pck_report, "plus_parts": list(PLUS_PARTS), "by_dataset": {}}
    rows, figs = [], []
    for r in ctx.results:
        full = ctx.birds_test[r.dataset]
        n = _demo_queries(r.n)
        ds = torch.utils.data.Subset(full, range(n))
        t1 = time.perf_counter()
        dec = chm_corr_decisions(pipe, ds, chm, keypoints=full.keypoints[:n], size=tuple(full.images.shape[-2:]))
        secs = time.perf_counter() - t1
        targets = r.methods["knn"].targets[:n]
        preds = {"knn": r.methods["knn"].predictions[:n]}
        if "emd_corr" in r.methods:
            preds["emd_corr"] = r.methods["emd_corr"].predictions[:n]
        preds["chm_corr"] = dec["chm_corr"]["predictions"]
        preds["chm_corr_plus"] = dec["chm_corr_plus"]["predictions"]
        knn_ok = preds["knn"] == targets
        entry: dict[str, Any] = {"n": n, "chm_ms_per_query": 1000 * secs / n}
        for m, p in preds.items():
            ok = p == targets
            lo, hi = wilson_interval(int(ok.sum()), n)
            b, c = int((knn_ok & ~ok).sum()), int((~knn_ok & ok).sum())
            entry[m] = {"accuracy": float(ok.float().mean()), "ci95": [lo, hi], "knn_only_right": b, "only_this_right": c,
                        "mcnemar_exact_p_vs_knn": mcnemar_exact(b, c)}
            rows.append([f"{r.dataset} (n = {n})", m, f"{ok.float().mean():.1%}", f"[{lo:.1%}, {hi:.1%}]",
                         "" if m == "knn" else f"{float(ok.float().mean() - knn_ok.float().mean()):+.1%}",
                         "" if m == "knn" else f"{b} / {c}", "" if m == "knn" else f"{mcnemar_exact(b, c):.3g}"])
        report["by_dataset"][r.dataset] = entry
        _log(f"CHM-Corr on {r.dataset}: " + ", ".join(f"{m} {entry[m]['accuracy']:.1%}" for m in preds)
             + f" ({entry['chm_ms_per_query']:.0f} ms/query)")
        if r.dataset == "test":
            d = dec["chm_corr"]
            for kind, pick in right_and_wrong(d["predictions"], targets):
                for i in pick:
                    exp = explain_reranked(_case(d, i, "chm_corr", grid), method="chm_corr", meta={"boxes": True})
                    figs.append(ctx.save_figure(exp.plot(**ctx.birds_plot_args(full, i)), f"chm_corr_{kind}_{i}"))
    test = report["by_dataset"].get("test", {})
    ood = [k for k in report["by_dataset"] if k != "test"]
    checks = {
        "chm_corr <= knn in distribution": bool(test and test["chm_corr"]["accuracy"] <= test["knn"]["accuracy"]),
        "chm_corr >= knn out of distribution": all(report["by_dataset"][k]["chm_corr"]["accuracy"] >= report["by_dataset"][k]["knn"]["accuracy"] for k in ood),
        "chm_corr > chm_corr_plus": all(v["chm_corr"]["accuracy"] > v["chm_corr_plus"]["accuracy"] for v in report["by_dataset"].values()),
    }
    report["paper_directions_hold"] = checks
    report["seconds"] = time.perf_counter() - t0
    check_html = "".join(f"<li>{html.escape(k)}: <b>{'holds' if v else 'does not hold'}</b></li>" for k, v in checks.items())
    body = ("<p>The shipped CHM (psi kernels on the SynthBirds classifier's layer4, frozen) transfers part keypoints between "
            "held-out test images; PCK (%) at alpha x the target box's longer side, beside two baselines on the same features:</p>"
            + html_table(pck_rows, ["pairs", "method", "PCK@0.05", "PCK@0.1", "PCK@0.15"])
            + "<p>Queries: the first n of each set (3 per class by default: a CHMNet runs on every query-candidate pair, "
              "about 0.1 s per query here; set XCORR_CHM_DEMO_QUERIES=all for every query). Top-1 over the same N = 50 shortlists, vote over K = 20 (ties to the lowest class). CHM-Corr: top 5 of cosine x "
              "cross-correlation mask (T = 0.55); CHM-Corr+: mean over the 49 cells of cosine x the query's keypoint mask of "
            + html.escape(", ".join(PLUS_PARTS)) + ". McNemar: exact two-sided test of each method against kNN on the same "
              "queries (only kNN right / only this method right).</p>"
            + html_table(rows, ["data set", "method", "top-1", "95% CI (Wilson)", "vs kNN", "only kNN / only this right", "McNemar p"])
            + f"<p>The paper's directions on SynthBirds:</p><ul>{check_html}</ul>"
            "<p>Figures: each column is one of the 5 re-ranked neighbours of the predicted class (bottom) under the query (top); "
            "numbered boxes of one colour are one scored correspondence, labelled with its cosine x mask.</p>")
    return DemoSection(title="CHM-Corr and CHM-Corr+ vs kNN and EMD-Corr", report=report, figures=figs, html=body)
