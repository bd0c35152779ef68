"""The ResNet-50 example runs end to end on files the test creates (random weights, tiny folders)."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import torch
import torchvision
from PIL import Image

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "emd_corr_resnet50.py"


def _folder(root: Path, per_class: int, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    for c, colour in enumerate([(200, 30, 30), (30, 200, 30), (30, 30, 200)]):
        d = root / f"class{c}"
        d.mkdir(parents=True)
        for i in range(per_class):
            noise = (torch.rand(64, 80, 3, generator=g) * 60).to(torch.uint8)
            arr = (torch.tensor(colour, dtype=torch.uint8) // 2 + noise).numpy()
            Image.fromarray(arr).save(d / f"{i}.png")


def test_example_runs(tmp_path: Path) -> None:
    torch.manual_seed(0)
    torch.save(torchvision.models.resnet50(weights=None).state_dict(), tmp_path / "r50.pth")
    _folder(tmp_path / "train", 4, 0)
    _folder(tmp_path / "val", 1, 1)
    spec = importlib.util.spec_from_file_location("example", EXAMPLE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    with torch.no_grad():
        summary = mod.main(["--weights", str(tmp_path / "r50.pth"), "--gallery", str(tmp_path / "train"),
                            "--queries", str(tmp_path / "val"), "--out", str(tmp_path / "out"),
                            "--shortlist", "6", "--k", "3", "--explain", "1", "--batch-size", "4"])
    assert set(summary) == {"knn", "emd_corr"} and 0 <= summary["emd_corr"]["top1_accuracy"] <= 1
    assert (tmp_path / "out" / "result.json").stat().st_size > 0
    assert list((tmp_path / "out").glob("emd_corr_query*.png"))
