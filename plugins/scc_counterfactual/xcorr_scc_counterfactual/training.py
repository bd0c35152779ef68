"""Training recipes for the plugin's auxiliary models (run by ``scripts/train_aux_models.py``, never at demo time).

- ``train_parts_detector``: a SmallResNet whose ``fc`` is applied to every layer4 cell (a 1x1
  convolution) to predict which SynthBirds part keypoints fall in that cell (10 parts + background),
  soft-target cross-entropy as in the paper's supplement. Uses keypoints: the Table 4 upper bound.
- ``train_ssl``: a SmallResNet trained on SynthBirds *without labels*: SimCLR's NT-Xent on the global
  embedding plus a dense term between the layer4 cells of two views that cover the same spot of the
  image (the views' crop/flip parameters are known, so cell correspondences are exact): an InfoNCE
  over cells (``dense="infonce"``, SimCLR-style; the shipped model) or SwAV's swapped prediction of
  Sinkhorn-balanced assignments of cells to learned prototypes (``dense="swav"``; tried, it
  clustered parts no better: K-means accuracy 35.0 / 44.2 / 59.2 % vs 35.7 / 45.7 / 58.5 %).
  Strong colour augmentation (channel shuffles, grey) keeps it from matching cells by colour alone.

Both models are saved with the core's checkpoint format (float16, weights only).
"""
from __future__ import annotations

import math
import time
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from xcorr_core.data import SynthBirds
from xcorr_core.models import SmallResNet

from .grid import keypoint_cells

__all__ = ["train_parts_detector", "train_ssl", "part_targets", "nt_xent", "sinkhorn_assign", "dense_swav", "dense_info_nce"]


def part_targets(keypoints: torch.Tensor, grid: tuple[int, int], image_size: int) -> torch.Tensor:
    """Soft per-cell targets `[B, 1 + P, h, w]` from keypoints `[B, P, 3]` (x, y, visible).

    Channel 0 is background (no visible keypoint in the cell); a cell with k keypoints gets 1/k on each.
    """
    b, p, _ = keypoints.shape
    h, w = grid
    cells = keypoint_cells(keypoints, grid, image_size)  # [B, P], -1 when invisible
    t = torch.zeros(b, 1 + p, h * w)
    bi, pi = torch.nonzero(cells >= 0, as_tuple=True)
    t[bi, 1 + pi, cells[bi, pi]] = 1.0
    counts = t[:, 1:].sum(1)
    t[:, 0] = (counts == 0).float()
    t = t / t.sum(1, keepdim=True)
    return t.view(b, 1 + p, h, w)


def _shift_flip(x: torch.Tensor, kp: torch.Tensor, gen: torch.Generator, pad: int = 10) -> tuple[torch.Tensor, torch.Tensor]:
    """Random horizontal flip and translation (same for the batch), keypoints moved along."""
    b, _, h, w = x.shape
    kp = kp.clone()
    if bool(torch.rand(1, generator=gen) < 0.5):
        x = x.flip(-1)
        kp[..., 0] = w - kp[..., 0]
    xp = F.pad(x, (pad, pad, pad, pad), mode="replicate")
    dx, dy = torch.randint(0, 2 * pad + 1, (2,), generator=gen).tolist()
    x = xp[:, :, dy:dy + h, dx:dx + w]
    kp[..., 0] += pad - dx
    kp[..., 1] += pad - dy
    inside = (kp[..., 0] >= 0) & (kp[..., 0] < w) & (kp[..., 1] >= 0) & (kp[..., 1] < h)
    kp[..., 2] = kp[..., 2] * inside.float()
    x = x * (0.8 + 0.4 * torch.rand(b, 1, 1, 1, generator=gen))
    return x.clamp(0, 1), kp


def cell_logits(model: SmallResNet, x: torch.Tensor) -> torch.Tensor:
    """The parts detector's per-cell logits `[B, 1 + P, h, w]`: ``fc`` applied to every layer4 cell."""
    return torch.einsum("bchw,kc->bkhw", model.forward_features(x), model.fc.weight) + model.fc.bias[None, :, None, None]


def train_parts_detector(epochs: int = 20, per_class: int = 60, seed: int = 0, lr: float = 2e-3,
                         log: Any = print) -> tuple[SmallResNet, dict[str, Any]]:
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    train = SynthBirds("train", per_class=per_class)
    p = len(train.part_names)
    model = SmallResNet(1 + p)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=5e-4)
    steps = epochs * math.ceil(len(train) / 64)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    t0 = time.time()
    for ep in tqdm(range(epochs), desc="parts detector"):
        model.train()
        perm = torch.randperm(len(train), generator=gen)
        tot = 0.0
        for i in range(0, len(train), 64):
            idx = perm[i:i + 64]
            x, kp = _shift_flip(train.images[idx].float() / 255, train.keypoints[idx], gen)
            logits = cell_logits(model, x)
            target = part_targets(kp, logits.shape[-2:], x.shape[-1])
            loss = -(target * logits.log_softmax(1)).sum(1).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            tot += loss.item() * len(idx)
        log(f"parts epoch {ep + 1}/{epochs} loss {tot / len(train):.4f}")
    model.eval()
    return model, {"train_images": len(train), "epochs": epochs, "seconds": round(time.time() - t0, 1),
                   **parts_detector_stats(model)}


@torch.no_grad()
def parts_detector_stats(model: SmallResNet) -> dict[str, float]:
    """On SynthBirds test: how often a cell's top prediction is one of its parts (cells with a keypoint)
    and background recall (cells without)."""
    test = SynthBirds("test")
    logits = cell_logits(model.eval(), test.images.float() / 255)
    target = part_targets(test.keypoints, logits.shape[-2:], test.images.shape[-1])
    pred = logits.argmax(1)
    has_kp = target[:, 0] == 0
    hit = target.gather(1, pred[:, None])[:, 0] > 0
    return {"test_part_cell_accuracy": round(float(hit[has_kp].float().mean()), 4),
            "test_background_recall": round(float((pred[~has_kp] == 0).float().mean()), 4)}


def nt_xent(za: torch.Tensor, zb: torch.Tensor, temperature: float) -> torch.Tensor:
    """SimCLR's NT-Xent for L2-normalised pairs `[B, D]` (positives on the diagonal, both directions)."""
    z = torch.cat([za, zb])
    sim = z @ z.T / temperature
    sim.fill_diagonal_(-1e9)
    n = len(za)
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(n)])
    return F.cross_entropy(sim, target)


def _views(x: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """One random view per image: resized crop (scale 0.55-1 of the side) + flip via an affine grid,
    then colour augmentation. Returns the view `[B, 3, H, W]` and theta `[B, 2, 3]` (view -> image
    normalised coordinates)."""
    b = len(x)
    s = 0.55 + 0.45 * torch.rand(b, generator=gen)
    flip = torch.where(torch.rand(b, generator=gen) < 0.5, -1.0, 1.0)
    tx = (torch.rand(b, generator=gen) * 2 - 1) * (1 - s)
    ty = (torch.rand(b, generator=gen) * 2 - 1) * (1 - s)
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0], theta[:, 0, 2] = s * flip, tx
    theta[:, 1, 1], theta[:, 1, 2] = s, ty
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    v = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    # colour: channel permutation (p .6), grey (p .2), brightness / contrast
    perm = torch.stack([torch.randperm(3, generator=gen) for _ in range(b)])
    shuffle = torch.rand(b, generator=gen) < 0.6
    v = torch.where(shuffle[:, None, None, None], v.gather(1, perm[:, :, None, None].expand_as(v)), v)
    grey = torch.rand(b, generator=gen) < 0.2
    v = torch.where(grey[:, None, None, None], v.mean(1, keepdim=True).expand_as(v), v)
    mean = v.mean((1, 2, 3), keepdim=True)
    v = (v - mean) * (0.7 + 0.6 * torch.rand(b, 1, 1, 1, generator=gen)) + mean * (0.7 + 0.6 * torch.rand(b, 1, 1, 1, generator=gen))
    return v.clamp(0, 1), theta


def _cell_centres(theta: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Image-normalised coordinates `[B, h*w, 2]` of a view's cell centres."""
    ys = (torch.arange(h) * 2 + 1) / h - 1
    xs = (torch.arange(w) * 2 + 1) / w - 1
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    pts = torch.stack([gx.flatten(), gy.flatten(), torch.ones(h * w)], -1)  # [hw, 3]
    return torch.einsum("bij,pj->bpi", theta, pts)


def _corresponding(ca: torch.Tensor, cb: torch.Tensor, scale_b: torch.Tensor, w: int) -> tuple[torch.Tensor, torch.Tensor]:
    """For each cell of view a `[B, hw]`: the nearest cell of view b of the same image, and whether it lies
    within one b cell (cell centres ``ca``, ``cb`` `[B, hw, 2]` in image-normalised coordinates)."""
    near, pos = torch.cdist(ca, cb).min(-1)
    return pos, near < (2.0 / w) * scale_b[:, None]


def dense_info_nce(fa: torch.Tensor, fb: torch.Tensor, ca: torch.Tensor, cb: torch.Tensor, scale_b: torch.Tensor,
                   temperature: float) -> torch.Tensor:
    """Dense InfoNCE: each cell of view a `[B, D, h, w]` against every cell of view b in the batch;
    its positive is the b cell of the same image whose centre is nearest (if within one b cell)."""
    b, d, h, w = fa.shape
    za = F.normalize(fa.flatten(2).transpose(1, 2), dim=-1)  # [B, hw, D]
    zb = F.normalize(fb.flatten(2).transpose(1, 2), dim=-1)
    pos, ok = _corresponding(ca, cb, scale_b, w)
    logits = torch.einsum("bpd,qd->bpq", za, zb.reshape(b * h * w, d)) / temperature  # [B, hw, B*hw]
    target = pos + (torch.arange(b) * h * w)[:, None]
    loss = F.cross_entropy(logits[ok], target[ok]) if bool(ok.any()) else logits.sum() * 0
    return loss


@torch.no_grad()
def sinkhorn_assign(scores: torch.Tensor, eps: float = 0.05, iters: int = 3) -> torch.Tensor:
    """SwAV's equal-partition soft assignment `[N, K]` of N samples to K prototypes from scores `[N, K]`."""
    q = torch.exp((scores - scores.max()) / eps).T  # [K, N]
    q /= q.sum()
    k, n = q.shape
    for _ in range(iters):
        q /= q.sum(1, keepdim=True) * k
        q /= q.sum(0, keepdim=True) * n
    return (q * n).T


def dense_swav(fa: torch.Tensor, fb: torch.Tensor, ca: torch.Tensor, cb: torch.Tensor, scale_b: torch.Tensor,
               prototypes: torch.Tensor, temperature: float) -> torch.Tensor:
    """Swapped prediction on corresponding cells: each cell of view a predicts the prototype assignment
    of its nearest cell of view b (same image, within one b cell) and vice versa."""
    b, d, h, w = fa.shape
    za = F.normalize(fa.flatten(2).transpose(1, 2), dim=-1)  # [B, hw, D]
    zb = F.normalize(fb.flatten(2).transpose(1, 2), dim=-1)
    pos, ok = _corresponding(ca, cb, scale_b, w)
    protos = F.normalize(prototypes, dim=1)
    sa = za[ok] @ protos.T  # [M, K]
    sb = torch.gather(zb, 1, pos[..., None].expand(-1, -1, d))[ok] @ protos.T
    qa, qb = sinkhorn_assign(sa.detach()), sinkhorn_assign(sb.detach())
    return -0.5 * ((qb * F.log_softmax(sa / temperature, 1)).sum(1).mean() + (qa * F.log_softmax(sb / temperature, 1)).sum(1).mean())


class _DenseHead(nn.Module):
    def __init__(self, cin: int, dim: int = 128) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(cin, cin, 1), nn.ReLU(inplace=True), nn.Conv2d(cin, dim, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def train_ssl(epochs: int = 20, per_class: int = 60, seed: int = 0, lr: float = 2e-3, batch: int = 96,
              temperature: float = 0.2, dense_weight: float = 1.0, dense: str = "infonce", prototypes: int = 32,
              log: Any = print) -> tuple[SmallResNet, dict[str, Any]]:
    """Self-supervised SmallResNet on SynthBirds train images (labels are never read)."""
    if dense not in ("infonce", "swav"):
        raise ValueError(f"dense must be 'infonce' or 'swav', got {dense!r}")
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    train = SynthBirds("train", per_class=per_class)
    images = train.images  # the labels are not used
    model = SmallResNet(128, head="embedding")
    head = _DenseHead(model.widths[-1])
    params = list(model.parameters()) + list(head.parameters())
    protos = nn.Parameter(torch.randn(prototypes, 128)) if dense == "swav" else None
    if protos is not None:
        params.append(protos)
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=1e-4)
    steps = epochs * (len(images) // batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    t0 = time.time()
    for ep in tqdm(range(epochs), desc="ssl"):
        model.train()
        perm = torch.randperm(len(images), generator=gen)
        tot_g = tot_d = 0.0
        n = 0
        for i in range(0, len(images) - batch + 1, batch):
            x = images[perm[i:i + batch]].float() / 255
            va, ta = _views(x, gen)
            vb, tb = _views(x, gen)
            fa, fb = model.forward_features(torch.cat([va, vb])).chunk(2)
            za = F.normalize(model.fc(fa.mean((2, 3))), dim=1)
            zb = F.normalize(model.fc(fb.mean((2, 3))), dim=1)
            lg = nt_xent(za, zb, temperature)
            h, w = fa.shape[-2:]
            ca, cb = _cell_centres(ta, h, w), _cell_centres(tb, h, w)
            da, db = head(fa), head(fb)
            if dense == "swav":
                ld = dense_swav(da, db, ca, cb, tb[:, 1, 1], protos, 0.1)
            else:
                ld = 0.5 * (dense_info_nce(da, db, ca, cb, tb[:, 1, 1], temperature)
                            + dense_info_nce(db, da, cb, ca, ta[:, 1, 1], temperature))
            loss = lg + dense_weight * ld
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            tot_g, tot_d, n = tot_g + lg.item(), tot_d + ld.item(), n + 1
        log(f"ssl epoch {ep + 1}/{epochs} global {tot_g / n:.4f} dense {tot_d / n:.4f}")
    model.eval()
    return model, {"train_images": len(images), "epochs": epochs, "seconds": round(time.time() - t0, 1), "labels_used": False,
                   "dense_loss": dense}
