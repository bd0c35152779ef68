"""ProtoKNN speed (needs the protoknn plugin installed).

    python benchmarks/bench_protoknn.py [--repeats 5]

In one run, on a SynthBirds batch of 48 (24 classes x 2) at 112 px with the SmallResNet backbone,
D = 64, M = 128:
  * the cluster loss, batched (all classes in one masked Sinkhorn solve) vs a per-class loop
    of the same computation (affiliation and Sinkhorn class by class), equal values checked;
  * a whole training step (forward, the three losses, backward, Adam) with each;
  * one explanation vs its floor: the query's forward pass plus the kNN search;
  * memory of the profile gallery per image (M floats).
Prints JSON.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _timing import median_seconds  # noqa: E402

from xcorr_core.data import SynthBirds  # noqa: E402
from xcorr_core.models import load_pretrained as load_core_model  # noqa: E402
from xcorr_protoknn import ClusterLoss, ProtoKNNNet, TrainConfig, encode, gumbel_affiliation, patch_costs  # noqa: E402
from xcorr_protoknn.components import ProtoKNNSetup  # noqa: E402
from xcorr_protoknn.projection import project_prototypes  # noqa: E402
from xcorr_protoknn.training import ProtoKNNLoss, balanced_batch  # noqa: E402


def loop_cluster_loss(profiles: torch.Tensor, cosines: torch.Tensor, labels: torch.Tensor, gumbel: torch.Tensor,
                      eps: float = 0.05, max_iter: int = 100, tol: float = 1e-3) -> torch.Tensor:
    """The same loss class by class: affiliation, de-biasing and a log-domain Sinkhorn per class."""
    E = gumbel_affiliation(profiles.detach(), 0.05, gumbel=gumbel)
    classes = labels.unique()
    ebar = torch.stack([E[labels == c].mean(0) for c in classes])
    total = ebar.sum(0)
    cost, c_hat = patch_costs(cosines)
    loss = cost.new_zeros(())
    for j, c in enumerate(classes):
        ehat = torch.where(total > 0, ebar[j] / total.clamp_min(1e-30), torch.zeros_like(total))
        p = ehat / ehat.sum() if float(ehat.sum()) > 0 else torch.full_like(ehat, 1 / ehat.numel())
        rows = (labels == c).nonzero().flatten()
        with torch.no_grad():
            lk = -cost[rows].detach() / eps
            logb = torch.where(p > 0, torch.log((rows.numel() * p).clamp_min(1e-30)), torch.full_like(p, float("-inf")))
            f = torch.zeros(rows.numel())
            g = torch.zeros_like(p)
            for _ in range(max_iter):
                f = -torch.logsumexp(lk + g, 1)
                g = torch.where(torch.isfinite(logb), logb - torch.logsumexp(lk + f[:, None], 0), torch.full_like(g, float("-inf")))
                f2 = -torch.logsumexp(lk + g, 1)
                if float((f2 - f).abs().max()) < tol:
                    f = f2
                    break
            T = torch.exp(lk + f[:, None] + g)
        loss = loss + (T * c_hat[rows]).sum()
    return loss / profiles.shape[0]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(2)
    data = SynthBirds("train")
    model = ProtoKNNNet(load_core_model("birds"), "layer4", 256, dim=64, prototypes=128, prototype_steps=2000)
    gen = torch.Generator().manual_seed(0)
    cfg = TrainConfig()
    idx = balanced_batch(data.labels, 24, 2, gen)
    x, y = data.images[idx].float() / 255, data.labels[idx]
    out = model.outputs(x)
    noise = -torch.log(-torch.log(torch.rand(48, 48, 128, generator=gen).clamp(1e-20, 1 - 1e-7)))
    batched = ClusterLoss("full")
    a = batched(out.profiles, out.cosines, y, gumbel=noise)
    b = loop_cluster_loss(out.profiles, out.cosines, y, noise)
    assert torch.allclose(a, b, rtol=1e-4), (float(a), float(b))
    t = median_seconds({"batched": lambda: batched(out.profiles, out.cosines, y, gumbel=noise),
                        "per_class_loop": lambda: loop_cluster_loss(out.profiles, out.cosines, y, noise)}, repeats=args.repeats)
    loss_fn = ProtoKNNLoss(24, 64, cfg)
    opt = torch.optim.Adam(list(model.parameters()) + list(loss_fn.parameters()), lr=1e-5)

    def step(loop: bool) -> None:
        o = model.outputs(x)
        if loop:
            total = loss_fn.task(o.profiles, y) + 0.1 * loop_cluster_loss(o.profiles, o.cosines, y, noise) + loss_fn.aux(o.aux, y)
        else:
            total = loss_fn(o, y)[0]
        opt.zero_grad()
        total.backward()
        opt.step()

    ts = median_seconds({"batched": lambda: step(False), "per_class_loop": lambda: step(True)}, repeats=args.repeats)
    # explanation vs forward + kNN search
    setup = ProtoKNNSetup(model, data.images, data.labels, project_prototypes(model, data.images))
    q = SynthBirds("test").image(0)
    te = median_seconds({"explanation": lambda: setup.explain(q),
                         "forward_plus_search": lambda: setup.classifier.predict(encode(model, q[None])[0], 1)}, repeats=args.repeats)
    print(json.dumps({
        "cluster_loss_48x128": {"batched_ms": round(1000 * t["batched"], 2), "per_class_loop_ms": round(1000 * t["per_class_loop"], 2),
                                "speedup": round(t["per_class_loop"] / t["batched"], 2)},
        "training_step_48": {"batched_ms": round(1000 * ts["batched"], 1), "per_class_loop_ms": round(1000 * ts["per_class_loop"], 1),
                             "speedup": round(ts["per_class_loop"] / ts["batched"], 2)},
        "explanation": {"ms": round(1000 * te["explanation"], 2), "forward_plus_search_ms": round(1000 * te["forward_plus_search"], 2),
                        "ratio": round(te["explanation"] / te["forward_plus_search"], 2)},
        "gallery_bytes_per_image": 128 * 4,
    }, indent=2))


if __name__ == "__main__":
    main()
