"""Training recipes for the shipped models (run by ``scripts/train_models.py``; never at demo time).

- ``train_birds``: SmallResNet classifier on SynthBirds train, cross-entropy.
- ``train_birds_vit``: the small torchvision ViT (``models.small_vit``) on the same data and loss, with
  more epochs and weight decay (a ViT learns its locality from the data).
- ``train_herd``: SmallResNet embedding on SynthHerd train, supervised contrastive
  loss (a metric loss) on P x K batches; evaluated by retrieval recall@1 on
  held-out individuals.
"""
from __future__ import annotations

import time
from typing import Any

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .data import SynthBirds, SynthHerd
from .models import SmallResNet

__all__ = ["train_birds", "train_birds_vit", "train_herd", "evaluate_birds", "recall_at_1", "supcon_loss", "birds_test_stats", "herd_test_stats"]


def _augment(x: torch.Tensor, gen: torch.Generator, pad: int = 8) -> torch.Tensor:
    """Random translation by up to ``pad`` px (reflect padding) and brightness jitter."""
    b, _, h, w = x.shape
    xp = F.pad(x, (pad, pad, pad, pad), mode="reflect")
    dx, dy = torch.randint(0, 2 * pad + 1, (2,), generator=gen).tolist()
    x = xp[:, :, dy:dy + h, dx:dx + w]
    return (x * (0.8 + 0.4 * torch.rand(b, 1, 1, 1, generator=gen))).clamp(0, 1)


@torch.no_grad()
def evaluate_birds(model: SmallResNet, ds: SynthBirds, batch: int = 256) -> float:
    model.eval()
    correct = 0
    for i in range(0, len(ds), batch):
        x = ds.images[i:i + batch].float() / 255
        correct += int((model(x).argmax(1) == ds.labels[i:i + batch]).sum())
    return correct / len(ds)


def train_birds(epochs: int = 30, per_class: int = 60, seed: int = 0, lr: float = 2e-3, log: Any = print,
                model: torch.nn.Module | None = None, weight_decay: float = 5e-4) -> tuple[Any, dict[str, Any]]:
    """A SynthBirds classifier (default: a SmallResNet) trained with cross-entropy and label smoothing."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    train = SynthBirds("train", per_class=per_class)
    model = model if model is not None else SmallResNet(len(train.class_names))
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    steps = epochs * ((len(train) + 63) // 64)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    t0 = time.time()
    for ep in tqdm(range(epochs), desc="birds"):
        model.train()
        perm = torch.randperm(len(train), generator=gen)
        tot = 0.0
        for i in range(0, len(train), 64):
            idx = perm[i:i + 64]
            x = _augment(train.images[idx].float() / 255, gen)
            loss = F.cross_entropy(model(x), train.labels[idx], label_smoothing=0.1)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            tot += loss.item() * len(idx)
        log(f"birds epoch {ep + 1}/{epochs} loss {tot / len(train):.4f}")
    model.eval()
    stats = {"train_images": len(train), "epochs": epochs, "seconds": round(time.time() - t0, 1), **birds_test_stats(model)}
    return model, stats


def train_birds_vit(epochs: int = 150, per_class: int = 60, seed: int = 0, lr: float = 1e-3, log: Any = print) -> tuple[Any, dict[str, Any]]:
    """The small ViT (`models.small_vit`) on SynthBirds: `train_birds`' data and loss, AdamW with weight decay 0.05."""
    from .models.small_vit import small_vit

    torch.manual_seed(seed)
    return train_birds(epochs=epochs, per_class=per_class, seed=seed, lr=lr, log=log, model=small_vit(24), weight_decay=0.05)


def birds_test_stats(model: SmallResNet) -> dict[str, float]:
    """Test accuracy of a SynthBirds classifier on the clean test set and both OOD variants."""
    return {f"test_accuracy_{v}": round(evaluate_birds(model, SynthBirds("test", v)), 4) for v in ("clean", "sticker", "style")}


def herd_test_stats(model: SmallResNet) -> dict[str, float]:
    """Leave-one-out retrieval recall@1 on held-out (test) and seen (train) individuals."""
    return {"test_recall_at_1": round(recall_at_1(model, SynthHerd("test")), 4),
            "train_recall_at_1": round(recall_at_1(model, SynthHerd("train", individuals=40)), 4)}


def supcon_loss(emb: torch.Tensor, labels: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """Supervised contrastive loss of L2-normalised embeddings `[B, D]`."""
    sim = emb @ emb.T / temperature
    eye = torch.eye(len(emb), dtype=torch.bool)
    sim = sim.masked_fill(eye, -1e9)
    pos = (labels[:, None] == labels[None, :]) & ~eye
    logp = sim - torch.logsumexp(sim, dim=1, keepdim=True)
    return -(logp * pos).sum(1).div(pos.sum(1).clamp(min=1)).mean()


@torch.no_grad()
def recall_at_1(model: SmallResNet, ds: SynthHerd, batch: int = 256) -> float:
    """Leave-one-out retrieval: fraction of photos whose nearest other photo shows the same individual."""
    model.eval()
    emb = torch.cat([model(ds.images[i:i + batch].float() / 255) for i in range(0, len(ds), batch)])
    sim = emb @ emb.T
    sim.fill_diagonal_(-2)
    return float((ds.labels[sim.argmax(1)] == ds.labels).float().mean())


def train_herd(epochs: int = 25, individuals: int = 300, seed: int = 0, lr: float = 2e-3, P: int = 16, K: int = 4,
               log: Any = print) -> tuple[SmallResNet, dict[str, Any]]:
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    train = SynthHerd("train", individuals=individuals)
    model = SmallResNet(128, head="embedding")
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=5e-4)
    per_epoch = individuals // P
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * per_epoch)
    t0 = time.time()
    for ep in tqdm(range(epochs), desc="herd"):
        model.train()
        ids = torch.randperm(individuals, generator=gen)
        tot = 0.0
        for b in range(per_epoch):
            who = ids[b * P:(b + 1) * P]
            shots = torch.stack([torch.randperm(train.photos, generator=gen)[:K] for _ in range(P)])
            idx = (who[:, None] * train.photos + shots).flatten()
            x = _augment(train.images[idx].float() / 255, gen, pad=6)
            loss = supcon_loss(model(x), train.labels[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            tot += loss.item()
        log(f"herd epoch {ep + 1}/{epochs} loss {tot / per_epoch:.4f}")
    stats = {"train_individuals": individuals, "epochs": epochs, "seconds": round(time.time() - t0, 1), **herd_test_stats(model)}
    return model, stats
