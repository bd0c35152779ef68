"""Pair selection and data-set evaluation as in the paper: each query's top-k gallery
matches under the model give correct and incorrect pairs; for each pair the PAIR-X metrics,
then Spearman rho and the binned Bhattacharyya Delta per metric."""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
from pydantic import BaseModel
from scipy import stats
from torch import nn
from tqdm.auto import tqdm

from xcorr_core import GalleryIndex
from xcorr_core.data import apply_homography

from .explain import PairXExplanation, explain_pairs
from .homography import homography_from_features, sift_features
from .metrics import binned_bhattacharyya, inverted_residual_mean, match_coverage

__all__ = ["PairRecord", "select_pairs", "evaluate_pairs", "aggregate"]


class PairRecord(BaseModel):
    query: int
    gallery: int
    rank: int
    similarity: float
    correct: bool
    residual_score: float  # S1 against the classical (SIFT + RANSAC) homography; 0 if none was found
    coverage: float
    true_residual_px: float | None = None  # mean |H_true(p1) - p2| over all matches, correct pairs only
    true_residual_top_px: float | None = None  # the same over the top-n matches


@torch.no_grad()
def select_pairs(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, query_idx: list[int], gallery_idx: list[int],
                 k: int = 3, balance: bool = False, seed: int = 0) -> list[tuple[int, int, int, float, bool]]:
    """(query, gallery, rank, cosine, correct) for the top-k gallery matches of each query.
    ``balance`` keeps as many correct as incorrect pairs (a seeded sample of the larger group),
    as the paper samples equal numbers of each."""
    emb = torch.cat([model(images[i:i + 128]) for i in range(0, len(images), 128)])
    index = GalleryIndex(emb.shape[1])
    index.add(emb[gallery_idx], labels[gallery_idx], ids=torch.tensor(gallery_idx))
    res = index.search(emb[query_idx], k)
    out = []
    for qi, q in enumerate(query_idx):
        for r in range(k):
            g = int(res.ids[qi, r])
            out.append((q, g, r, float(res.scores[qi, r]), bool(labels[q] == labels[g])))
    if balance:
        rng = np.random.default_rng(seed)
        yes = [p for p in out if p[4]]
        no = [p for p in out if not p[4]]
        m = min(len(yes), len(no))
        keep = set(map(tuple, [yes[i] for i in rng.choice(len(yes), m, replace=False)] + [no[i] for i in rng.choice(len(no), m, replace=False)]))
        out = [p for p in out if p in keep]
    return out


def evaluate_pairs(model: nn.Module, image: Any, pairs: list[tuple[int, int, int, float, bool]], *, layer: str = "layer3",
                   n: int = 20, true_homography: Any = None, homography_fn: Any = None, progress: bool | None = None,
                   batch: int = 10) -> list[PairRecord]:
    """PAIR-X metrics per pair. ``image(i) -> [3, H, W]``; ``true_homography(i, j)`` (optional)
    gives the ground truth for correct pairs (SynthHerd); ``homography_fn(image_a, image_b) ->
    [3, 3] or None`` estimates the reference homography (default: SIFT + RANSAC). Pairs are
    explained ``batch`` at a time (`explain_pairs`: matches and relevance, no pixel maps)."""
    sift: dict[int, Any] = {}  # the default estimator's SIFT features, once per image (images recur across pairs)

    def features(i: int, img: torch.Tensor) -> Any:
        if i not in sift:
            sift[i] = sift_features(img)
        return sift[i]

    out = []
    bar = tqdm(total=len(pairs), desc="PAIR-X pairs", disable=(None if progress is None else not progress), leave=False)
    for s in range(0, len(pairs), batch):
        group = pairs[s:s + batch]
        imgs = {i: image(i) for p in group for i in p[:2]}
        exps = explain_pairs(model, torch.stack([imgs[p[0]] for p in group]), torch.stack([imgs[p[1]] for p in group]),
                             layer=layer, n=n, batch=batch)
        for (q, g, r, sim, ok), exp in zip(group, exps):
            out.append(_record(exp, q, g, r, sim, ok, imgs[q], imgs[g], homography_fn, features, true_homography))
        bar.update(len(group))
    bar.close()
    return out


def _record(exp: PairXExplanation, q: int, g: int, r: int, sim: float, ok: bool, a: torch.Tensor, b: torch.Tensor,
            homography_fn: Any, features: Any, true_homography: Any) -> PairRecord:
    """One pair's metrics from its explanation (images ``a``, ``b``)."""
    H = homography_fn(a, b) if homography_fn is not None else homography_from_features(features(q, a), features(g, b), min_inliers=4)
    rec = PairRecord(query=q, gallery=g, rank=r, similarity=sim, correct=ok,
                     residual_score=inverted_residual_mean(exp, H) if H is not None else 0.0, coverage=match_coverage(exp))
    if ok and true_homography is not None:
        T = true_homography(q, g)
        rec.true_residual_px = _mean_residual(exp, T, exp.all_matches)
        rec.true_residual_top_px = _mean_residual(exp, T, exp.matches)
    return rec


def _mean_residual(exp: PairXExplanation, H: torch.Tensor, pairs: torch.Tensor) -> float:
    if pairs.shape[0] == 0:
        return float("nan")
    pa, pb = exp.cell_to_pixels(pairs[:, 0]), exp.cell_to_pixels(pairs[:, 1])
    return float((apply_homography(H, pa) - pb).norm(dim=1).mean())


def aggregate(records: list[PairRecord]) -> dict[str, Any]:
    """Spearman rho (metric vs model similarity) and Delta (correct vs incorrect) per metric."""
    sims = np.array([r.similarity for r in records])
    correct = np.array([r.correct for r in records])
    out: dict[str, Any] = {"pairs": len(records), "correct": int(correct.sum()), "incorrect": int((~correct).sum())}
    for key in ("residual_score", "coverage"):
        vals = np.array([getattr(r, key) for r in records])
        rho = stats.spearmanr(vals, sims)
        entry: dict[str, Any] = {"rho": float(rho.statistic), "rho_p": float(rho.pvalue)}
        if correct.any() and (~correct).any():
            entry["delta"], entry["bins"] = binned_bhattacharyya(vals, sims, correct)
            entry["mean_correct"], entry["mean_incorrect"] = float(vals[correct].mean()), float(vals[~correct].mean())
        out[key] = entry
    tr = [r.true_residual_px for r in records if r.true_residual_px is not None]
    tt = [r.true_residual_top_px for r in records if r.true_residual_top_px is not None]
    if tr:
        out["true_residual_px_all_matches"] = float(np.nanmean(tr))
        out["true_residual_px_top_matches"] = float(np.nanmean(tt))
    return out
