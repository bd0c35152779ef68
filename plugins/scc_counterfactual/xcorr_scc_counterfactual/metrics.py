"""Evaluation of counterfactuals with keypoints (Goyal et al.'s protocol, as the paper's authors run it).

Keypoints are mapped to grid cells (`grid.keypoint_cells`), only visible in-image ones count.
Per edit: Near-KP = 0.5 * ([query cell holds a keypoint] + [distractor cell holds one]);
Same-KP = [the two cells hold a keypoint of the same part]; in-box = 0.5 * ([query cell centre in the
query's object box] + [same for the distractor cell]). "All edits" pools the edits of every query;
"single edit" uses each query's first edit. #Edits averages over counterfactuals that flipped the
decision (failures are counted separately). Also the K-means part-clustering accuracy of Table 4.
"""
from __future__ import annotations

from typing import Any, ClassVar, Literal, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field

import xcorr_core as xc
from xcorr_core.errors import InputError

from .explainer import Counterfactual
from .grid import cell_parts, cells_in_box

__all__ = ["edit_scores", "pooled", "NearKP", "SameKP", "NumEdits", "InBox", "part_clustering_accuracy"]


def edit_scores(cf: Counterfactual, query_keypoints: torch.Tensor, distractor_keypoints: torch.Tensor,
                query_box: torch.Tensor | None = None, distractor_boxes: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Per-edit scores `[m]`: ``near_kp``, ``same_kp`` and (with boxes) ``in_box``.

    Args:
        query_keypoints: `[P, 3]` (x, y, visible) in pixels of the query image.
        distractor_keypoints: `[n, P, 3]` for the distractors of ``cf`` (same order).
        query_box: `[4]` and distractor_boxes `[n, 4]` (x0, y0, x1, y1), optional.
    """
    if distractor_keypoints.ndim != 3 or len(distractor_keypoints) < cf.n_distractors:
        raise InputError(f"distractor_keypoints must be [n >= {cf.n_distractors}, P, 3], got {tuple(distractor_keypoints.shape)}")
    m = cf.num_edits
    if m == 0:
        empty = torch.zeros(0)
        return {"near_kp": empty, "same_kp": empty, **({"in_box": empty} if query_box is not None else {})}
    qi = torch.tensor([e.query_cell for e in cf.edits])
    dn = torch.tensor([e.distractor for e in cf.edits])
    dc = torch.tensor([e.distractor_cell for e in cf.edits])
    qp = cell_parts(query_keypoints, cf.grid, cf.image_size)[qi]  # [m, P]
    dp = cell_parts(distractor_keypoints, cf.grid, cf.image_size)[dn, dc]  # [m, P]
    out = {"near_kp": 0.5 * (qp.any(1).float() + dp.any(1).float()), "same_kp": (qp & dp).any(1).float()}
    if query_box is not None:
        if distractor_boxes is None:
            raise InputError("give distractor_boxes with query_box")
        qb = cells_in_box(query_box.float(), cf.grid, cf.image_size)[qi]
        db = cells_in_box(distractor_boxes.float(), cf.grid, cf.image_size)[dn, dc]
        out["in_box"] = 0.5 * (qb.float() + db.float())
    return out


def pooled(per_edit: Sequence[torch.Tensor], mode: Literal["all", "single"]) -> torch.Tensor:
    """Pool per-counterfactual edit scores: every edit ("all") or each first edit ("single")."""
    parts = [s if mode == "all" else s[:1] for s in per_edit]
    return torch.cat(parts) if parts else torch.zeros(0)


def _cfs(data: dict[str, Any]) -> list[Counterfactual]:
    exps = data.get("explanations")
    if not exps or not all(isinstance(e, Counterfactual) for e in exps):
        raise InputError("pass explanations=[Counterfactual, ...]")
    return list(exps)


def _per_edit(data: dict[str, Any], key: str) -> list[torch.Tensor]:
    cfs = _cfs(data)
    qk, dk = data.get("query_keypoints"), data.get("distractor_keypoints")
    if qk is None or dk is None or len(qk) != len(cfs) or len(dk) != len(cfs):
        raise InputError("pass query_keypoints ([P, 3] each) and distractor_keypoints ([n, P, 3] each), one per explanation")
    qb, db = data.get("query_boxes"), data.get("distractor_boxes")
    if key == "in_box" and (qb is None or db is None or len(qb) != len(cfs) or len(db) != len(cfs)):
        raise InputError("pass query_boxes ([4] each) and distractor_boxes ([n, 4] each), one per explanation")
    return [edit_scores(cf, q, d, qb[i] if qb is not None else None, db[i] if db is not None else None)[key]
            for i, (cf, q, d) in enumerate(zip(cfs, qk, dk))]


class _EditMetric(xc.Metric):
    key: ClassVar[str]
    requires: ClassVar[frozenset[str]] = frozenset({"explanations", "query_keypoints", "distractor_keypoints"})

    class Config(xc.StrictConfig):
        mode: Literal["all", "single"] = Field("all", description="'all' pools every edit; 'single' each query's first edit")

    def compute(self, **data: Any) -> xc.MetricResult:
        vals = pooled(_per_edit(data, self.key), self.config.mode).double()
        if vals.numel() == 0:
            raise InputError("no edits to score")
        return xc.MetricResult(name=self.name, value=float(vals.mean()), per_sample=vals, n=vals.numel(),
                               details={"mode": self.config.mode})


class NearKP(_EditMetric):
    name = "near_kp"
    summary = "Near-KP: how often edited cells hold an object keypoint (discriminative regions)"
    key = "near_kp"


class SameKP(_EditMetric):
    name = "same_kp"
    summary = "Same-KP: how often the replaced and replacing cells hold the same part (semantic consistency)"
    key = "same_kp"


class InBox(_EditMetric):
    name = "in_box"
    summary = "Foreground rate: how often edited cells lie inside the object's box"
    key = "in_box"
    requires: ClassVar[frozenset[str]] = frozenset({"explanations", "query_keypoints", "distractor_keypoints", "query_boxes", "distractor_boxes"})


class NumEdits(xc.Metric):
    name = "num_edits"
    summary = "#Edits: mean number of cell edits until the decision flips (failures counted apart)"
    requires: ClassVar[frozenset[str]] = frozenset({"explanations"})

    def compute(self, **data: Any) -> xc.MetricResult:
        cfs = _cfs(data)
        ok = torch.tensor([cf.num_edits for cf in cfs if cf.success], dtype=torch.float64)
        failures = sum(not cf.success for cf in cfs)
        return xc.MetricResult(name=self.name, value=float(ok.mean()) if ok.numel() else float("nan"), per_sample=ok,
                               n=ok.numel(), details={"failures": failures, "counterfactuals": len(cfs)})


def part_clustering_accuracy(features: torch.Tensor, keypoints: torch.Tensor, image_size: int | tuple[int, int], k: int,
                             seed: int = 0, niter: int = 25) -> float:
    """Table 4's clustering accuracy: K-means (faiss) on the L2-normalised cells of all images, each
    cluster named by majority vote of the parts in its cells, accuracy = fraction of keypoint cells
    whose cluster's part is one of theirs.

    Args:
        features: `[N, d, h, w]` auxiliary features on the grid.
        keypoints: `[N, P, 3]`.
    """
    import faiss

    n, d, h, w = features.shape
    x = F.normalize(features.permute(0, 2, 3, 1).reshape(-1, d).float(), dim=1).numpy().astype(np.float32)
    parts = cell_parts(keypoints, (h, w), image_size).reshape(-1, keypoints.shape[1])  # [N*hw, P]
    if k < 1 or k > len(x):
        raise InputError(f"k must be in [1, {len(x)}], got {k}")
    km = faiss.Kmeans(d, k, niter=niter, nredo=3, seed=seed, verbose=False, spherical=True)
    km.train(x)
    _, assign = km.index.search(x, 1)
    assign = torch.from_numpy(assign[:, 0]).long()
    has = parts.any(1)
    votes = torch.zeros(k, parts.shape[1])
    votes.index_add_(0, assign[has], parts[has].float())
    name = votes.argmax(1)  # [k]
    hit = parts[torch.arange(len(parts)), name[assign]]
    return float(hit[has].float().mean())
