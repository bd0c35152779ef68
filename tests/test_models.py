"""Models: checkpoints load safely and exactly; torchvision weights from a path; shipped models work."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from xcorr_core.data import SynthBirds, SynthHerd
from xcorr_core.errors import IndexFileError, InputError
from xcorr_core.models import SmallResNet, load_checkpoint, load_pretrained, model_card, save_checkpoint, torchvision_backbone
from xcorr_core.training import recall_at_1


def test_checkpoint_round_trip(tmp_path: Path) -> None:
    m = SmallResNet(7, head="embedding").eval()
    path = save_checkpoint(m, tmp_path / "m.pt", half=False)
    back = load_checkpoint(path)
    x = torch.rand(2, 3, 64, 64)
    torch.testing.assert_close(back(x), m(x))
    assert back.head == "embedding" and not back.training


def test_checkpoint_errors(tmp_path: Path) -> None:
    with pytest.raises(IndexFileError, match="no checkpoint"):
        load_checkpoint(tmp_path / "x.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a zip")
    with pytest.raises(IndexFileError, match="not a readable"):
        load_checkpoint(tmp_path / "junk.pt")
    torch.save({"format": "something else"}, tmp_path / "other.pt")
    with pytest.raises(IndexFileError, match="not an xcorr"):
        load_checkpoint(tmp_path / "other.pt")


def test_pickled_code_is_refused(tmp_path: Path) -> None:
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"format": "xcorr.checkpoint/1", "x": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(IndexFileError):
        load_checkpoint(tmp_path / "evil.pt")


def test_torchvision_backbone_from_path(tmp_path: Path) -> None:
    import torchvision

    ref = torchvision.models.resnet18(weights=None, num_classes=10).eval()
    torch.save(ref.state_dict(), tmp_path / "r18.pth")
    torch.save({"state_dict": ref.state_dict()}, tmp_path / "ckpt.pth")
    for f in ("r18.pth", "ckpt.pth"):
        m = torchvision_backbone("resnet18", tmp_path / f, num_classes=10)
        x = torch.rand(1, 3, 64, 64)
        torch.testing.assert_close(m(x), ref(x))
    baked = torchvision_backbone("resnet18", tmp_path / "r18.pth", num_classes=10, normalize=True)
    from xcorr_core.models import imagenet_normalize

    x = torch.rand(2, 3, 64, 64)
    torch.testing.assert_close(baked(x), ref(imagenet_normalize()(x)))
    with pytest.raises(IndexFileError, match="does not fit"):
        torchvision_backbone("resnet18", tmp_path / "r18.pth")  # 1000 classes expected
    with pytest.raises(IndexFileError, match="no weights file"):
        torchvision_backbone("resnet50", tmp_path / "missing.pth")
    with pytest.raises(InputError):
        torchvision_backbone("alexnet")  # type: ignore[arg-type]


def test_shipped_models_are_small_and_accurate() -> None:
    card = model_card()
    for name in ("birds", "herd"):
        path = Path(__file__).resolve().parents[1] / "xcorr_core" / "weights" / f"{name}_smallresnet.pt"
        assert path.stat().st_size < 5_000_000
        assert name in card
    birds = load_pretrained("birds")
    ds = SynthBirds("test", per_class=3, progress=False)
    with torch.no_grad():
        acc = float((birds(ds.images.float() / 255).argmax(1) == ds.labels).float().mean())
    assert acc > 0.8  # chance is 1/24
    herd = load_pretrained("herd")
    assert recall_at_1(herd, SynthHerd("test", individuals=20, progress=False)) > 0.5  # chance is 5/119
    with pytest.raises(InputError, match="shipped"):
        load_pretrained("cats")  # type: ignore[arg-type]


def test_every_shipped_weight_file_is_package_data() -> None:
    """Issue 27 item 7: the core wheel left out weights/model_card.json (pyproject's package-data), so a
    wheel-installed demo wrote no model block. Every file in xcorr_core/weights must match a pattern."""
    import fnmatch
    import tomllib
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    patterns = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["xcorr_core"]
    files = [p.relative_to(root / "xcorr_core").as_posix() for p in (root / "xcorr_core" / "weights").iterdir() if p.is_file()]
    assert "weights/model_card.json" in files and "weights/birds_vit.pt" in files
    assert [f for f in files if not any(fnmatch.fnmatch(f, pat) for pat in patterns)] == []


def test_shipped_weights_find_files_cards_and_name_the_script() -> None:
    from xcorr_core.errors import IndexFileError
    from xcorr_core.models import ShippedWeights, model_card
    from xcorr_core.models.zoo import WEIGHTS

    assert WEIGHTS.require("birds_smallresnet.pt").stat().st_size > 0
    assert WEIGHTS.card() == model_card() and "birds" in WEIGHTS.card()
    other = ShippedWeights("xcorr_core", "scripts/make_it.py", folder="no_such_folder")
    assert other.card() == {} and other.path("w.pt").name == "w.pt"
    with pytest.raises(IndexFileError, match=r"no_such_folder/w\.pt are missing; run scripts/make_it\.py to make them"):
        other.require("w.pt")
