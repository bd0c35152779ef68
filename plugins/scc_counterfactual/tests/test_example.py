"""The ResNet-50 example runs on files the test creates; the SSL checkpoint loader reads real layouts."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
import torchvision
from PIL import Image

import xcorr_core as xc
from xcorr_scc_counterfactual.auxiliary import load_ssl_resnet50

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "scc_counterfactual_resnet50.py"


def test_ssl_checkpoint_loader(tmp_path: Path) -> None:
    torch.manual_seed(0)
    ref = torchvision.models.resnet50(weights=None)
    wrapped = {"state_dict": {f"module.{k}": v for k, v in ref.state_dict().items() if not k.startswith("fc.")}}
    wrapped["state_dict"]["module.projection_head.0.weight"] = torch.zeros(3, 3)  # an SSL head: ignored
    torch.save(wrapped, tmp_path / "swav.pth")
    model = load_ssl_resnet50(tmp_path / "swav.pth", normalize=False)
    assert torch.equal(model.layer4[2].conv3.weight, ref.layer4[2].conv3.weight)
    partial = {k: v for k, v in ref.state_dict().items() if not k.startswith("layer4.")}
    torch.save(partial, tmp_path / "partial.pth")
    with pytest.raises(xc.IndexFileError, match="lacks"):
        load_ssl_resnet50(tmp_path / "partial.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(xc.IndexFileError, match="readable"):
        load_ssl_resnet50(tmp_path / "junk.pth")


def test_example_runs(tmp_path: Path) -> None:
    from xcorr_core.models import imagenet_normalize

    torch.manual_seed(0)
    clf = torchvision.models.resnet50(weights=None, num_classes=2).eval()
    # a random trunk, and a head that tells reddish images (class 0) from bluish ones (class 1)
    trunk = torch.nn.Sequential(*list(clf.children())[:-1], torch.nn.Flatten())
    norm = imagenet_normalize()
    with torch.no_grad():
        red, blue = torch.tensor([0.9, 0.1, 0.1]), torch.tensor([0.1, 0.1, 0.9])
        fw, fb = (trunk(norm(c.view(1, 3, 1, 1).expand(1, 3, 224, 224)))[0] for c in (red, blue))
        d = fw - fb
        clf.fc.weight.copy_(torch.stack([d, -d]))
        clf.fc.bias.copy_(torch.stack([-(d @ (fw + fb)) / 2, (d @ (fw + fb)) / 2]))
    torch.save(clf.state_dict(), tmp_path / "clf.pth")
    torch.save(torchvision.models.resnet50(weights=None).state_dict(), tmp_path / "ssl.pth")
    g = torch.Generator().manual_seed(0)
    paths = {}
    for name, colour in (("red", red), ("blue0", blue), ("blue1", blue), ("blue2", blue), ("red2", red)):
        arr = ((0.97 * colour + 0.03 * torch.rand(8, 8, 3, generator=g)).repeat_interleave(32, 0).repeat_interleave(32, 1) * 255).to(torch.uint8)
        paths[name] = tmp_path / f"{name}.png"
        Image.fromarray(arr.numpy()).save(paths[name])
    spec = importlib.util.spec_from_file_location("scc_example", EXAMPLE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out = mod.main(["--weights", str(tmp_path / "clf.pth"), "--num-classes", "2", "--aux-weights", str(tmp_path / "ssl.pth"),
                    "--query", str(paths["red"]), "--distractors", str(paths["blue0"]), str(paths["blue1"]), str(paths["red2"]),
                    str(paths["blue2"]), "--out", str(tmp_path / "cf.png")])
    assert out["query_class"] == 0 and out["target_class"] == 1 and out["path"] == "closed_form"
    assert out["dropped_distractors"] == [str(paths["red2"])]
    assert out["success"] and out["edits"] >= 1
    assert (tmp_path / "cf.png").stat().st_size > 1000 and (tmp_path / "cf.json").stat().st_size > 0
    # the authors' cut: g = layer4[1:] + head, scored by the exact local path
    paper = mod.main(["--weights", str(tmp_path / "clf.pth"), "--num-classes", "2", "--aux-weights", str(tmp_path / "ssl.pth"),
                      "--query", str(paths["red"]), "--distractors", str(paths["blue0"]), str(paths["blue1"]),
                      "--layer", "layer4.0", "--out", str(tmp_path / "cf_paper.png")])
    assert paper["path"] == "local" and paper["query_class"] == 0 and paper["target_class"] == 1 and paper["success"]
