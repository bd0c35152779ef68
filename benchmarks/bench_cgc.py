"""CGC speed and memory (needs the cgc plugin installed).

    python benchmarks/bench_cgc.py [--repeats 3]

In one run:
  * insertion + deletion AUC (RISE protocol, 28 steps) for 64 SynthBirds images at 112 px on the
    shipped SmallResNet and for 8 images at 224 px on a torchvision ResNet-50 (random weights):
    batched (all steps of all images in chunks of 8, the fastest chunk on this 2-core CPU) vs the
    per-step loop (one forward per step per image), equal curves checked;
  * a CGC training step (three views, two double-backprop maps, backward, SGD) vs a plain CE step
    on one view, and vs CE on the same three views, SmallResNet at 112 px, batch 32;
  * peak resident memory added by each kind of step over the set-up (model, data), each in a fresh
    child process (Linux: the peak counter is reset with /proc/self/clear_refs after the set-up).
Prints JSON.
"""
from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).parent))
from _timing import median_seconds  # noqa: E402

from xcorr_cgc import CGCLoss, ViewsConfig, blur, insertion_deletion, layer_maps, make_views, paper_total  # noqa: E402


@torch.no_grad()
def loop_curves(model: torch.nn.Module, images: torch.Tensor, maps: torch.Tensor, mode: str, steps: int = 28) -> torch.Tensor:
    """The RISE loop: per image, copy the next pixels in and run one forward per step."""
    sub = blur(images)
    out = []
    for x, s, m in zip(images, sub, maps):
        h, w = x.shape[-2:]
        order = torch.sort(F.interpolate(m[None, None], size=(h, w), mode="bilinear", align_corners=False).flatten(),
                           descending=True, stable=True).indices
        per = math.ceil(h * w / steps)
        cls = int(model(x[None]).argmax(1))
        cur, fin = (s.clone(), x) if mode == "insertion" else (x.clone(), s)
        scores = []
        for i in range(steps + 1):
            scores.append(float(model(cur[None]).softmax(1)[0, cls]))
            idx = order[per * i:per * (i + 1)]
            cur.view(x.shape[0], -1)[:, idx] = fin.reshape(x.shape[0], -1)[:, idx]
        out.append(torch.tensor(scores))
    return torch.stack(out)


def auc_case(name: str, model: torch.nn.Module, images: torch.Tensor, repeats: int) -> dict:
    maps = layer_maps(model, images, "layer4").maps
    def batched() -> tuple:
        return tuple(insertion_deletion(model, images, maps, mode=m, batch_size=8)[1] for m in ("insertion", "deletion"))
    def loop() -> tuple:
        return tuple(loop_curves(model, images, maps, m) for m in ("insertion", "deletion"))
    for a, b in zip(batched(), loop()):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
    t = median_seconds({"batched": batched, "loop": loop}, repeats=repeats, warmup=0)
    return {"case": name, "images": len(images), "batched_s": round(t["batched"], 3), "per_step_loop_s": round(t["loop"], 3),
            "speedup": round(t["loop"] / t["batched"], 2)}


def step_fns(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor) -> dict:
    gen = torch.Generator().manual_seed(0)
    v = make_views(images, ViewsConfig(size=images.shape[-1]), gen)
    opt = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)
    crit = CGCLoss()
    def run(loss_fn) -> None:
        loss = loss_fn()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return {
        "ce_one_view": lambda: run(lambda: F.cross_entropy(model(v.train), labels)),
        "ce_three_views": lambda: run(lambda: sum(F.cross_entropy(model(z), labels) for z in (v.train, v.orig, v.aug))),
        "cgc": lambda: run(lambda: paper_total(model(v.train), crit(model, v.orig, v.aug, v.boxes, v.flips), labels)),
    }


def birds_batch(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    from xcorr_core.data import SynthBirds

    ds = SynthBirds("test", per_class=math.ceil(n / 24), progress=False)
    return ds.images[:n].float() / 255, ds.labels[:n]


def child(kind: str) -> None:
    """Run one kind of step a few times in this fresh process and print its peak RSS."""
    from xcorr_core.models import load_pretrained

    torch.set_num_threads(2)
    model = load_pretrained("birds").train()
    x, y = birds_batch(32)
    fn = step_fns(model, x, y)[kind]

    def status(key: str) -> float:
        for line in open("/proc/self/status"):
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
        return float("nan")

    base = status("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset VmHWM to the current RSS
    for _ in range(3):
        fn()
    peak = status("VmHWM")
    print(json.dumps({"setup_rss_mb": round(base, 1), "peak_rss_mb": round(peak, 1), "added_by_steps_mb": round(peak - base, 1)}))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--child", default=None)
    args = ap.parse_args()
    if args.child:
        child(args.child)
        return
    import torchvision

    from xcorr_core.models import load_pretrained

    torch.set_num_threads(2)
    out: dict = {"benchmark": "cgc", "threads": torch.get_num_threads(), "auc": [], "train_step": {}}
    birds = load_pretrained("birds").eval()
    x, y = birds_batch(64)
    out["auc"].append(auc_case("SmallResNet 112 px", birds, x, args.repeats))
    torch.manual_seed(0)
    r50 = torchvision.models.resnet50(weights=None).eval()
    out["auc"].append(auc_case("ResNet-50 224 px (random weights)", r50, torch.rand(8, 3, 224, 224), 1))
    model = load_pretrained("birds").train()
    xb, yb = x[:32], y[:32]
    t = median_seconds(step_fns(model, xb, yb), repeats=args.repeats + 2, warmup=1)
    out["train_step"] = {"model": "SmallResNet 112 px, batch 32", **{f"{k}_s": round(v, 4) for k, v in t.items()},
                         "cgc_over_ce_one_view": round(t["cgc"] / t["ce_one_view"], 2),
                         "cgc_over_ce_three_views": round(t["cgc"] / t["ce_three_views"], 2)}
    mem = {}
    for kind in ("ce_one_view", "ce_three_views", "cgc"):
        res = subprocess.run([sys.executable, __file__, "--child", kind], capture_output=True, text=True, check=True)
        mem[kind] = json.loads(res.stdout.strip().splitlines()[-1])
    out["train_step_memory"] = mem
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
