"""Evaluation of counterfactuals with keypoints (Goyal et al.'s protocol, as the paper's authors run it).

Keypoints are mapped to grid cells (`grid.keypoint_cells`), only visible in-image ones count.
Per edit: Near-KP = 0.5 * ([query cell holds a keypoint] + [distractor cell holds one]);
Same-KP = [the two cells hold a keypoint of the same part]; in-box = 0.5 * ([query cell centre in the
query's object box] + [same for the distractor cell]). "All edits" pools the edits of every query;
"single edit" uses each query's first edit. #Edits averages over counterfactuals that flipped the
decision (failures are counted separately). Also the K-means part-clustering accuracy of Table 4.

Part groups: the authors count a left wing against a right wing as the same part on CUB (left and
right parts merged, `CUB_PART_GROUPS`); `part_groups` builds the grouping, on by default
(``"auto"``) when the part names are CUB's.
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

__all__ = ["edit_scores", "pooled", "NearKP", "SameKP", "NumEdits", "InBox", "part_clustering_accuracy", "part_groups",
           "CUB_PART_GROUPS"]

#: CUB-200-2011's 15 parts (``parts/parts.txt``) -> the authors' 12 groups: left and right merged
CUB_PART_GROUPS: dict[str, str] = {
    "back": "back", "beak": "beak", "belly": "belly", "breast": "breast", "crown": "crown", "forehead": "forehead",
    "left eye": "eye", "right eye": "eye", "left leg": "leg", "right leg": "leg", "left wing": "wing", "right wing": "wing",
    "nape": "nape", "tail": "tail", "throat": "throat",
}
GroupSpec = Literal["auto", "none", "cub"]


def part_groups(part_names: Sequence[str], groups: GroupSpec | dict[str, str] = "auto") -> torch.Tensor | None:
    """Group id per part `[P]` (parts sharing an id count as the same part for Same-KP), or None (each
    part its own). ``"cub"``: `CUB_PART_GROUPS`; ``"auto"``: that when ``part_names`` are CUB's (a
    ``left``/``right`` pair among them), else none; a dict maps part name -> group name."""
    names = [str(n).strip().lower() for n in part_names]
    if groups == "none":
        return None
    if groups == "auto":
        if not any(n.startswith("left ") and "right " + n[5:] in names for n in names):
            return None
        groups = "cub"
    table = CUB_PART_GROUPS if groups == "cub" else {str(k).strip().lower(): str(v) for k, v in groups.items()}  # type: ignore[union-attr]
    missing = [n for n in names if n not in table]
    if missing:
        raise InputError(f"no group for part(s) {missing}; the grouping names {sorted(table)}")
    ids = {g: i for i, g in enumerate(dict.fromkeys(table[n] for n in names))}
    return torch.tensor([ids[table[n]] for n in names], dtype=torch.long)


def edit_scores(cf: Counterfactual, query_keypoints: torch.Tensor, distractor_keypoints: torch.Tensor,
                query_box: torch.Tensor | None = None, distractor_boxes: torch.Tensor | None = None,
                groups: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Per-edit scores `[m]`: ``near_kp``, ``same_kp`` and (with boxes) ``in_box``.

    Args:
        query_keypoints: `[P, 3]` (x, y, visible) in pixels of the query image.
        distractor_keypoints: `[n, P, 3]` for the distractors of ``cf`` (same order).
        query_box: `[4]` and distractor_boxes `[n, 4]` (x0, y0, x1, y1), optional.
        groups: long `[P]` group id per part (`part_groups`): Same-KP counts parts of one group as the same.
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
    near = 0.5 * (qp.any(1).float() + dp.any(1).float())
    if groups is not None:
        if groups.shape != (qp.shape[1],):
            raise InputError(f"groups must give one group id per part ({qp.shape[1]}), got shape {tuple(groups.shape)}")
        n_groups = int(groups.max()) + 1
        qp = torch.zeros(m, n_groups).index_add_(1, groups, qp.float()) > 0
        dp = torch.zeros(m, n_groups).index_add_(1, groups, dp.float()) > 0
    out = {"near_kp": near, "same_kp": (qp & dp).any(1).float()}
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


def _per_edit(data: dict[str, Any], key: str, spec: GroupSpec = "none") -> list[torch.Tensor]:
    cfs = _cfs(data)
    qk, dk = data.get("query_keypoints"), data.get("distractor_keypoints")
    if qk is None or dk is None or len(qk) != len(cfs) or len(dk) != len(cfs):
        raise InputError("pass query_keypoints ([P, 3] each) and distractor_keypoints ([n, P, 3] each), one per explanation")
    qb, db = data.get("query_boxes"), data.get("distractor_boxes")
    if key == "in_box" and (qb is None or db is None or len(qb) != len(cfs) or len(db) != len(cfs)):
        raise InputError("pass query_boxes ([4] each) and distractor_boxes ([n, 4] each), one per explanation")
    groups = None
    if key == "same_kp" and spec != "none":
        names = data.get("part_names")
        if names is None and spec == "cub":
            names = list(CUB_PART_GROUPS)
        groups = part_groups(names, spec) if names is not None else None
    return [edit_scores(cf, q, d, qb[i] if qb is not None else None, db[i] if db is not None else None, groups)[key]
            for i, (cf, q, d) in enumerate(zip(cfs, qk, dk))]


class _EditMetric(xc.Metric):
    key: ClassVar[str]
    requires: ClassVar[frozenset[str]] = frozenset({"explanations", "query_keypoints", "distractor_keypoints"})

    class Config(xc.StrictConfig):
        mode: Literal["all", "single"] = Field("all", description="'all' pools every edit; 'single' each query's first edit")

    def compute(self, **data: Any) -> xc.MetricResult:
        vals = pooled(_per_edit(data, self.key, getattr(self.config, "part_groups", "none")), self.config.mode).double()
        if vals.numel() == 0:
            raise InputError("no edits to score")
        return xc.MetricResult(name=self.name, value=float(vals.mean()), per_sample=vals, n=vals.numel(),
                               details={"mode": self.config.mode})


class NearKP(_EditMetric):
    name = "near_kp"
    summary = "Near-KP: how often edited cells hold an object keypoint (discriminative regions)"
    key = "near_kp"


class SameKP(_EditMetric):
    """Same-KP; pass ``part_names`` with the keypoints to group parts (CUB: left/right merged by default)."""

    name = "same_kp"
    summary = "Same-KP: how often the replaced and replacing cells hold the same part (semantic consistency)"
    key = "same_kp"

    class Config(_EditMetric.Config):
        part_groups: GroupSpec = Field("auto", description="'auto': CUB's left/right parts merged when part_names are CUB's "
                                                           "(the authors' grouping); 'cub': always; 'none': every part its own")


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
