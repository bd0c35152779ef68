"""Feature extraction throughput: FeatureExtractor vs the bare model forward on the same batches.

    python benchmarks/bench_features.py [--quick]

Prints JSON: images/s for both and their ratio (goal >= 0.95) for the shipped
SmallResNet at 112 px (layer4) and a torchvision ResNet-50 at 224 px (layer3 + layer4).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
import torchvision

sys.path.insert(0, str(Path(__file__).parent))
from _timing import median_seconds  # noqa: E402

from xcorr_core import FeatureExtractor  # noqa: E402
from xcorr_core.models import SmallResNet  # noqa: E402


def bench(name: str, model: torch.nn.Module, layers: list[str], batch: torch.Tensor, repeats: int) -> dict:
    model.eval()
    fx = FeatureExtractor(model, layers)
    fx_full = FeatureExtractor(model, layers, stop_early=False)

    def bare() -> None:
        with torch.no_grad():
            model(batch)

    t = median_seconds({"bare": bare, "extractor": lambda: fx(batch), "extractor_no_stop": lambda: fx_full(batch, return_output=True)}, repeats)
    n = batch.shape[0]
    return {
        "model": name, "layers": layers, "batch": list(batch.shape),
        "bare_images_per_s": round(n / t["bare"], 1),
        "extractor_images_per_s": round(n / t["extractor"], 1),
        "extractor_full_forward_images_per_s": round(n / t["extractor_no_stop"], 1),
        "ratio_extractor_vs_bare": round(t["bare"] / t["extractor"], 3),
        "ratio_full_forward_vs_bare": round(t["bare"] / t["extractor_no_stop"], 3),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    torch.manual_seed(0)
    reps = 3 if args.quick else 11
    out = {"threads": torch.get_num_threads(), "results": [
        bench("SmallResNet@112", SmallResNet(24), ["layer4"], torch.rand(64, 3, 112, 112), reps),
        bench("resnet50@224", torchvision.models.resnet50(weights=None), ["layer3", "layer4"], torch.rand(8, 3, 224, 224), reps),
    ]}
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
