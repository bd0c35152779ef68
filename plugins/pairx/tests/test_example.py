"""The ResNet-50 PAIR-X example runs on files the test creates (random weights, two images)."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import torch
import torchvision
from PIL import Image

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "pairx_resnet50.py"


def test_example_runs(tmp_path: Path) -> None:
    torch.manual_seed(0)
    torch.save(torchvision.models.resnet50(weights=None, num_classes=64).state_dict(), tmp_path / "reid.pth")
    g = torch.Generator().manual_seed(0)
    for name in ("a.png", "b.png"):
        Image.fromarray((torch.rand(240, 260, 3, generator=g) * 255).to(torch.uint8).numpy()).save(tmp_path / name)
    spec = importlib.util.spec_from_file_location("pairx_example", EXAMPLE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out = mod.main(["--weights", str(tmp_path / "reid.pth"), "--embedding-dim", "64", "--image-a", str(tmp_path / "a.png"),
                    "--image-b", str(tmp_path / "b.png"), "--n", "3", "--out", str(tmp_path / "pairx.png")])
    assert out["kept"] == 3 and -1 <= out["similarity"] <= 1
    assert (tmp_path / "pairx.png").stat().st_size > 1000 and (tmp_path / "pairx.json").stat().st_size > 0
