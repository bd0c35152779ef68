"""Training and evaluating a CHM head on keypoint-annotated pairs (the shipped SynthBirds CHM).

* pairs: two images of one class, or of two classes of one genus, with the keypoints
  visible in both (`keypoint_pairs`);
* loss: squared L2 distance in normalised coordinates per valid keypoint, mean per pair,
  then over the batch (the authors' objective, `transfer_loss`);
* PCK@alpha: fraction of a pair's valid keypoints within alpha x T of the truth, T the
  target box's longer side, averaged over pairs (`pck`);
* baselines on the same backbone features: the argmax of the raw cosine correlation and
  the core's mutual nearest neighbours (`baseline_transfer`).

With a frozen backbone (the shipped recipe) the backbone maps are computed once and only
the head learns. Depends on torch, tqdm, the core and this plugin's modules.
"""
from __future__ import annotations

import time
from typing import Literal

import torch
from pydantic import BaseModel, Field
from tqdm.auto import tqdm

from xcorr_core.errors import InputError
from xcorr_core.matching import mutual_nearest_neighbours

from .chmnet import CHMNet
from .transfer import normalise_points, unnormalise_points

__all__ = ["keypoint_pairs", "transfer_loss", "pck", "baseline_transfer", "TrainConfig", "train_head", "evaluate_pck"]


def keypoint_pairs(labels: torch.Tensor, genus: torch.Tensor, keypoints: torch.Tensor, n: int, *,
                   mode: Literal["class", "genus", "both"] = "both", min_shared: int = 3,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """Draw ``n`` pairs `[n, 2]` of image indices with at least ``min_shared`` keypoints visible in both.

    ``mode``: same class, two different classes of one genus, or half of each.
    ``keypoints`` `[N, P, 3]` (x, y, visible).
    """
    vis = keypoints[..., 2] > 0
    out: list[torch.Tensor] = []
    want = {"class": (n, 0), "genus": (0, n), "both": (n - n // 2, n // 2)}[mode]
    for kind, count in zip(("class", "genus"), want):
        got = 0
        tries = 0
        while got < count:
            tries += 1
            if tries > 1000:
                raise InputError(f"could not draw {count} {kind} pairs with {min_shared} shared visible keypoints")
            a = torch.randint(len(labels), (4 * count,), generator=generator)
            b = torch.randint(len(labels), (4 * count,), generator=generator)
            ok = (a != b) & ((vis[a] & vis[b]).sum(1) >= min_shared)
            ok &= (labels[a] == labels[b]) if kind == "class" else ((labels[a] != labels[b]) & (genus[a] == genus[b]))
            pairs = torch.stack([a[ok], b[ok]], 1)[: count - got]
            out.append(pairs)
            got += pairs.shape[0]
    return torch.cat(out)


def transfer_loss(pred: torch.Tensor, truth: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Mean over pairs of the mean squared L2 error over valid keypoints (normalised coordinates).

    ``pred``, ``truth`` `[B, P, 2]`, ``valid`` bool `[B, P]` (a pair needs one valid keypoint).
    """
    if bool((valid.sum(1) == 0).any()):
        raise InputError("every pair needs at least one valid keypoint")
    se = ((pred - truth) ** 2).sum(-1) * valid
    return (se.sum(1) / valid.sum(1)).mean()


def pck(pred: torch.Tensor, truth: torch.Tensor, valid: torch.Tensor, extent: torch.Tensor,
        alphas: tuple[float, ...] = (0.05, 0.1, 0.15)) -> dict[float, torch.Tensor]:
    """Per-pair PCK `[B]` for each alpha: valid keypoints within ``alpha * extent`` (pixels).

    ``pred``, ``truth`` `[B, P, 2]` pixels, ``valid`` `[B, P]`, ``extent`` `[B]` (T).
    """
    dist = (pred - truth).norm(dim=-1)
    n = valid.sum(1).clamp_min(1)
    return {a: ((dist <= a * extent[:, None]) & valid).sum(1) / n for a in alphas}


def baseline_transfer(src_feat: torch.Tensor, trg_feat: torch.Tensor, points: torch.Tensor, size: tuple[int, int],
                      kind: Literal["argmax", "mutual_nn"]) -> torch.Tensor:
    """Transfer pixel points `[B, P, 2]` with a correlation-free rule on feature maps `[B, C, h, w]`.

    ``argmax``: the point's cell goes to the target cell of highest cosine, the point keeps
    its offset from the cell centre. ``mutual_nn``: the point moves by the displacement of
    the mutual-nearest-neighbour match (cosine, the core's `mutual_nearest_neighbours`) whose
    source cell is nearest to it.
    """
    b, c, h, w = src_feat.shape
    H, W = size
    cell = torch.tensor([W / w, H / h], dtype=points.dtype)
    centres = (torch.stack(torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij"), -1).flip(-1).reshape(-1, 2).to(points.dtype)
               + 0.5) * cell  # [hw, 2] (x, y) pixels
    col = (points[..., 0] / cell[0]).floor().clamp(0, w - 1)
    row = (points[..., 1] / cell[1]).floor().clamp(0, h - 1)
    src_cell = (row * w + col).long()  # [B, P]
    out = torch.empty_like(points)
    for i in range(b):  # evaluation of baselines only: one small problem per pair
        if kind == "argmax":
            fs = torch.nn.functional.normalize(src_feat[i].flatten(1), dim=0)
            ft = torch.nn.functional.normalize(trg_feat[i].flatten(1), dim=0)
            tgt = (fs.T @ ft).argmax(1)[src_cell[i]]
            out[i] = points[i] - centres[src_cell[i]] + centres[tgt]
        else:
            pairs, _ = mutual_nearest_neighbours(src_feat[i], trg_feat[i], "cosine")
            if pairs.shape[0] == 0:
                out[i] = points[i]
                continue
            d = torch.cdist(points[i], centres[pairs[:, 0]])
            j = d.argmin(1)
            out[i] = points[i] + centres[pairs[j, 1]] - centres[pairs[j, 0]]
    return out


class TrainConfig(BaseModel):
    """How the shipped SynthBirds CHM head was trained (assumptions scaled to a 2-core CPU)."""

    steps: int = Field(1500, ge=1, description="optimiser steps")
    batch: int = Field(16, ge=1, description="pairs per step (authors: 20)")
    lr: float = Field(1e-3, gt=0, description="Adam learning rate of the head (authors: 1e-3)")
    flip: bool = Field(True, description="flip both images (and keypoints) of a pair with probability 0.5")
    pair_mode: Literal["class", "genus", "both"] = "both"
    val_every: int = Field(250, ge=1)
    seed: int = 0


def _pair_batch(feats: torch.Tensor, feats_flip: torch.Tensor, kps: torch.Tensor, pairs: torch.Tensor, size: int,
                flip: torch.Tensor) -> tuple[torch.Tensor, ...]:
    a, b = pairs[:, 0], pairs[:, 1]
    fa = torch.where(flip[:, None, None, None], feats_flip[a], feats[a])
    fb = torch.where(flip[:, None, None, None], feats_flip[b], feats[b])
    ka, kb = kps[a].clone(), kps[b].clone()
    for k in (ka, kb):
        k[..., 0] = torch.where(flip[:, None], size - k[..., 0], k[..., 0])
    valid = (ka[..., 2] > 0) & (kb[..., 2] > 0)
    return fa, fb, ka[..., :2], kb[..., :2], valid


def evaluate_pck(model: CHMNet, feats: torch.Tensor, kps: torch.Tensor, boxes: torch.Tensor, pairs: torch.Tensor, size: int,
                 *, method: Literal["chm", "argmax", "mutual_nn"] = "chm", chunk: int = 32) -> dict[str, float]:
    """Mean PCK@0.05/0.1/0.15 over ``pairs`` of precomputed backbone maps ``feats`` `[N, C, h, h]`."""
    scores: dict[float, list[torch.Tensor]] = {0.05: [], 0.1: [], 0.15: []}
    no_flip = torch.zeros(pairs.shape[0], dtype=torch.bool)
    for s in range(0, pairs.shape[0], chunk):
        p = pairs[s:s + chunk]
        fa, fb, ka, kb, valid = _pair_batch(feats, feats, kps, p, size, no_flip[s:s + chunk])
        if method == "chm":
            with torch.no_grad():
                corr = model.correlate(fa, fb)
                pred = unnormalise_points(model.transfer_normalised(corr, normalise_points(ka, (size, size))), (size, size))
        else:
            pred = baseline_transfer(fa, fb, ka, (size, size), method)
        bx = boxes[p[:, 1]]
        extent = torch.maximum(bx[:, 2] - bx[:, 0], bx[:, 3] - bx[:, 1])
        for a, v in pck(pred, kb, valid, extent).items():
            scores[a].append(v)
    return {f"pck@{a}": float(torch.cat(v).mean()) for a, v in scores.items()}


def train_head(model: CHMNet, feats: torch.Tensor, feats_flip: torch.Tensor, kps: torch.Tensor, labels: torch.Tensor,
               genus: torch.Tensor, size: int, config: TrainConfig, *, val: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
               progress: bool | None = None) -> dict[str, object]:
    """Train ``model.learner`` on precomputed (frozen-backbone) maps; keeps the best head by val PCK@0.1.

    ``val`` = (feats, keypoints, boxes, pairs) of held-out images. Returns the history.
    """
    g = torch.Generator().manual_seed(config.seed)
    torch.manual_seed(config.seed)
    head = model.learner.train()
    opt = torch.optim.Adam(head.parameters(), lr=config.lr)
    history: list[dict[str, float]] = []
    best, best_state = -1.0, None
    t0 = time.perf_counter()
    bar = tqdm(range(1, config.steps + 1), desc="CHM head", disable=(None if progress is None else not progress))
    run = 0.0
    for step in bar:
        pairs = keypoint_pairs(labels, genus, kps, config.batch, mode=config.pair_mode, generator=g)
        flip = (torch.rand(config.batch, generator=g) < 0.5) & config.flip
        fa, fb, ka, kb, valid = _pair_batch(feats, feats_flip, kps, pairs, size, flip)
        corr = model.correlate(fa, fb)
        pred = model.transfer_normalised(corr, normalise_points(ka, (size, size)))
        loss = transfer_loss(pred, normalise_points(kb, (size, size)), valid)
        opt.zero_grad()
        loss.backward()
        opt.step()
        run = 0.95 * run + 0.05 * float(loss) if step > 1 else float(loss)
        bar.set_postfix(loss=f"{run:.4f}")
        if val is not None and (step % config.val_every == 0 or step == config.steps):
            head.eval()
            res = evaluate_pck(model, val[0], val[1], val[2], val[3], size)
            head.train()
            history.append({"step": step, "loss": run, **res, "seconds": time.perf_counter() - t0})
            if res["pck@0.1"] > best:
                best, best_state = res["pck@0.1"], {k: v.detach().clone() for k, v in head.state_dict().items()}
    if best_state is not None:
        head.load_state_dict(best_state)
    head.eval()
    return {"history": history, "best_val_pck@0.1": best, "seconds": time.perf_counter() - t0}
