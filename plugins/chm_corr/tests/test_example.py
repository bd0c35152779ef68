"""The paper-setting example (ResNet-50 embeddings + the authors' CHMNet from files) runs end to
end on files the test creates (random weights, tiny folders, a small CHM input)."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import torch
import torchvision
from PIL import Image

from xcorr_chm_corr import authors_chmnet

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "chm_corr_resnet50.py"


def _folder(root: Path, per_class: int, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    for c, colour in enumerate([(200, 30, 30), (30, 200, 30)]):
        d = root / f"class{c}"
        d.mkdir(parents=True)
        for i in range(per_class):
            noise = (torch.rand(64, 80, 3, generator=g) * 60).to(torch.uint8)
            Image.fromarray((torch.tensor(colour, dtype=torch.uint8) // 2 + noise).numpy()).save(d / f"{i}.png")


def test_example_runs(tmp_path: Path) -> None:
    torch.manual_seed(0)
    torch.save(torchvision.models.resnet50(weights=None).state_dict(), tmp_path / "r50.pth")
    torch.save(authors_chmnet().state_dict(), tmp_path / "pas_psi.pt")
    _folder(tmp_path / "train", 3, 0)
    _folder(tmp_path / "val", 1, 1)
    spec = importlib.util.spec_from_file_location("chm_example", EXAMPLE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    with torch.no_grad():
        summary = mod.main(["--weights", str(tmp_path / "r50.pth"), "--chm", str(tmp_path / "pas_psi.pt"),
                            "--gallery", str(tmp_path / "train"), "--queries", str(tmp_path / "val"), "--out", str(tmp_path / "out"),
                            "--shortlist", "4", "--k", "3", "--explain", "1", "--batch-size", "4", "--chm-size", "96"])
    assert summary["n"] == 2 and 0 <= summary["chm_corr"] <= 1 and 0 <= summary["knn"] <= 1
    result = json.loads((tmp_path / "out" / "result.json").read_text())
    assert len(result["decisions"]) == 2 and len(result["decisions"][0]["reranked_ids"]) == 4
    assert (tmp_path / "out" / "chm_corr_query0.png").stat().st_size > 0
