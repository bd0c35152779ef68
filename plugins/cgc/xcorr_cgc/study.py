"""The paper's check on SynthBirds: fine-tune one classifier with CE, with CGC and with CGC without
negatives (same seed, data order, views and step budget), then score each model.

``finetune`` is the training loop (run by ``plugins/cgc/scripts/cgc_study.py``, never at demo time);
``evaluate`` measures top-1 on the clean / sticker / style test sets, Content Heatmap with the
SynthBirds boxes, insertion and deletion AUC, and the consistency of both map rules under seeded
crops/flips; ``summarise`` gives mean and 95 % t-interval over seeds. ``weights/study.json`` holds the
shipped run. Depends on torch, the core and this plugin.
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from tqdm.auto import tqdm

from xcorr_core.stats import over_seeds
from xcorr_core.data import SynthBirds

from .attribution import consistency, content_heatmap, eval_mode, insertion_deletion
from .heatmaps import layer_maps, upsample
from .loss import CGCConfig, CGCLoss, paper_total
from .pretrained import WEIGHTS
from .views import ViewsConfig, make_views

__all__ = ["Mode", "FinetuneConfig", "finetune", "evaluate", "test_sets", "summarise", "load_study", "study_path", "MODE_NAMES", "METRIC_NAMES"]

Mode = Literal["ce", "cgc", "cgc_noneg"]
MODE_NAMES = {"shipped": "shipped classifier (no fine-tuning)", "ce": "CE only (baseline)", "cgc": "CE + CGC",
              "cgc_noneg": "CE + CGC without negatives"}
METRIC_NAMES = {"top1_clean": "top-1 clean %", "top1_sticker": "top-1 sticker %", "top1_style": "top-1 style %",
                "ch": "Content Heatmap %", "insertion": "insertion AUC", "deletion": "deletion AUC",
                "consistency": "consistency (cosine)"}


class FinetuneConfig(BaseModel):
    """One fine-tuning run (defaults: the shipped study)."""

    model_config = ConfigDict(extra="forbid")
    mode: Mode = "cgc"
    steps: int = Field(400, ge=1)
    batch: int = Field(32, ge=2)
    lr: float = Field(0.01, gt=0, description="SGD (momentum 0.9) peak learning rate, cosine decay to 0")
    weight_decay: float = Field(1e-4, ge=0)
    seed: int = 0
    views: ViewsConfig = Field(default_factory=lambda: ViewsConfig(size=112))
    loss: CGCConfig = Field(default_factory=CGCConfig)


def finetune(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, config: FinetuneConfig,
             progress: bool | None = None) -> dict[str, Any]:
    """Fine-tune ``model`` in place on ``images`` `[N, 3, S, S]` (float in [0, 1]) and ``labels`` `[N]`.

    Every mode sees the same batches and views (one generator per seed) and minimises
    ``CE(train) + CE(orig) + CE(aug)``; ``cgc`` adds ``lam * InfoNCE``, ``cgc_noneg`` ``lam * MSE``.
    Returns a log (seconds, mean loss terms over the last 50 steps).
    """
    c = config
    torch.manual_seed(c.seed)
    gen = torch.Generator().manual_seed(c.seed)
    opt = torch.optim.SGD(model.parameters(), lr=c.lr, momentum=0.9, weight_decay=c.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=c.steps)
    crit = CGCLoss(c.loss, negatives=c.mode != "cgc_noneg") if c.mode != "ce" else None
    model.train()
    perm, pos = torch.randperm(len(images), generator=gen), 0
    tail: list[tuple[float, float]] = []
    t0 = time.perf_counter()
    for _ in tqdm(range(c.steps), desc=f"finetune {c.mode} seed {c.seed}", disable=None if progress is None else not progress):
        if pos + c.batch > len(perm):
            perm, pos = torch.randperm(len(images), generator=gen), 0
        idx = perm[pos:pos + c.batch]
        pos += c.batch
        v = make_views(images[idx], c.views, gen)
        y = labels[idx]
        if crit is None:
            ce = sum(F.cross_entropy(model(z), y) for z in (v.train, v.orig, v.aug))
            loss, term = ce, 0.0
        else:
            out = crit(model, v.orig, v.aug, v.boxes, v.flips)
            loss = paper_total(model(v.train), out, y, lam=c.loss.lam)
            term = float(out.loss.detach())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        tail = (tail + [(float(loss), term)])[-50:]
    model.eval()
    return {"seconds": round(time.perf_counter() - t0, 1), "loss": sum(t[0] for t in tail) / len(tail),
            "cgc_term": sum(t[1] for t in tail) / len(tail)}


@torch.no_grad()
def _top1(model: torch.nn.Module, ds: SynthBirds, batch: int = 256) -> list[int]:
    out = []
    for i in range(0, len(ds), batch):
        out += (model(ds.images[i:i + batch].float() / 255).argmax(1) == ds.labels[i:i + batch]).int().tolist()
    return out


def _maps(model: torch.nn.Module, x: torch.Tensor, targets: torch.Tensor | None, kind: str, layer: str, batch: int = 64) -> torch.Tensor:
    return torch.cat([upsample(layer_maps(model, x[i:i + batch], layer, None if targets is None else targets[i:i + batch],
                                          kind=kind).maps, tuple(x.shape[-2:])) for i in range(0, len(x), batch)])  # type: ignore[arg-type]


def test_sets(per_class: int = 10, seed: int = 0) -> dict[str, SynthBirds]:
    """SynthBirds test sets by variant (generate once, evaluate many models)."""
    return {v: SynthBirds("test", v, seed=seed, per_class=per_class, progress=False) for v in ("clean", "sticker", "style")}  # type: ignore[arg-type]


def evaluate(model: torch.nn.Module, *, layer: str = "layer4", data: dict[str, SynthBirds] | None = None, views_seed: int = 123) -> dict[str, Any]:
    """Score ``model`` on SynthBirds test (``data``: `test_sets()` by default).

    Top-1 per variant; CH of Grad-CAM for the true class inside ``boxes``; insertion / deletion AUC of
    Grad-CAM for the clean top-1 (RISE protocol, 28 steps, blur substrate); consistency of Grad-CAM
    (top-1 class of the orig view) under crops/flips drawn from ``views_seed``. For a model whose head is
    global average pooling + linear (SmallResNet, ResNets) Grad-CAM and CGC's grad x act map coincide
    (dy/dA is constant over space), so this is also the quantity CGC trains. Per-image values are
    kept so intervals can be formed over images or seeds.
    """
    data = data or test_sets()
    with eval_mode(model):
        out: dict[str, Any] = {}
        for variant in ("clean", "sticker", "style"):
            out[f"top1_{variant}"] = _top1(model, data[variant])
        ds = data["clean"]
        x = ds.images.float() / 255
        cam_true = _maps(model, x, ds.labels, "gradcam", layer)
        out["ch"] = content_heatmap(cam_true, ds.boxes.float()).tolist()
        cam_top = _maps(model, x, None, "gradcam", layer)
        out["insertion"] = insertion_deletion(model, x, cam_top, mode="insertion")[0].tolist()
        out["deletion"] = insertion_deletion(model, x, cam_top, mode="deletion")[0].tolist()
        v = make_views(x, ViewsConfig(size=x.shape[-1], resize_ratio=1.0), torch.Generator().manual_seed(views_seed))
        with torch.no_grad():
            t = model(v.orig).argmax(1)
        mo, ma = _maps(model, v.orig, t, "gradcam", layer), _maps(model, v.aug, t, "gradcam", layer)
        out["consistency"] = consistency(ma, mo, v.boxes, v.flips).tolist()
    return out


def _per_run(values: list[float], key: str) -> float:
    vals = [v for v in values if not math.isnan(v)]
    m = sum(vals) / max(len(vals), 1)
    return 100 * m if key.startswith("top1") else m


def summarise(runs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """mode -> {"seeds": n, metric: (mean over seeds, 95 % t half-width over seeds)}; each seed's value
    is the mean over its test images (top-1 in %). A single run gets NaN half-widths."""
    return over_seeds(runs, "mode", MODE_NAMES, {key: (lambda r, key=key: _per_run(r["metrics"][key], key)) for key in METRIC_NAMES})


def study_path() -> Path:
    return WEIGHTS.path("study.json")


def load_study(path: str | Path | None = None) -> dict[str, Any]:
    """The shipped study (or the file ``path``): ``{"config": ..., "runs": [{"mode", "seed", "log", "metrics"}, ...]}``
    ({} if absent)."""
    p = Path(path) if path is not None else study_path()
    return json.loads(p.read_text()) if p.is_file() else {}
