"""The on-disk cache of generated data sets: hits equal fresh generation, bad files are regenerated."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from xcorr_core.data import SynthBirds, SynthHerd, cache, synth_birds, synth_herd


def _files(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.pt"))


@pytest.fixture
def cache_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("XCORR_DATA_CACHE", str(tmp_path / "cache"))
    _forget()
    yield tmp_path / "cache"
    _forget()


def _forget() -> None:
    """Clear the in-process memo of generated sets, which would hide the disk cache."""
    synth_birds._generate.cache_clear()
    synth_herd._generate.cache_clear()


def _no_render(*_: object, **__: object) -> None:
    raise AssertionError("rendered although a valid cache file was there")


def test_birds_hit_equals_fresh_generation(cache_folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = SynthBirds("test", "sticker", per_class=1, num_classes=3, progress=False)
    assert len(_files(cache_folder)) == 1
    _forget()
    monkeypatch.setattr(synth_birds, "_render_all", _no_render)
    hit = SynthBirds("test", "sticker", per_class=1, num_classes=3, progress=False)
    monkeypatch.undo()
    monkeypatch.setenv("XCORR_DATA_CACHE", "off")
    _forget()
    fresh = SynthBirds("test", "sticker", per_class=1, num_classes=3, progress=False)
    for ds in (first, hit):
        assert torch.equal(ds.images, fresh.images) and torch.equal(ds.keypoints, fresh.keypoints)
        assert ds.annotations == fresh.annotations and torch.equal(ds.attributes, fresh.attributes)


def test_herd_hit_equals_fresh_generation(cache_folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = SynthHerd("test", individuals=2, photos=2, size=48, progress=False)
    _forget()
    monkeypatch.setattr(synth_herd, "_render_all", _no_render)
    hit = SynthHerd("test", individuals=2, photos=2, size=48, progress=False)
    for name in ("images", "visible", "homographies", "labels"):
        assert torch.equal(getattr(hit, name), getattr(first, name))
    assert hit.homographies.dtype == torch.float64


def test_every_parameter_is_in_the_key(cache_folder: Path) -> None:
    SynthBirds("test", per_class=1, num_classes=2, progress=False)
    SynthBirds("test", per_class=1, num_classes=2, seed=1, progress=False)
    SynthBirds("test", "style", per_class=1, num_classes=2, progress=False)
    SynthBirds("train", per_class=1, num_classes=2, progress=False)
    SynthBirds("test", per_class=1, num_classes=2, size=40, progress=False)
    assert len(_files(cache_folder)) == 5
    base = {"split": "test", "seed": 0}
    assert cache.cache_key("synthbirds", base) != cache.cache_key("synthherd", base)


def test_code_change_invalidates(cache_folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key = cache.cache_key("synthbirds", {"seed": 0})
    monkeypatch.setattr(cache, "_code_digest", lambda: "another renderer")
    assert cache.cache_key("synthbirds", {"seed": 0}) != key


@pytest.mark.parametrize("damage", ["flip", "truncate", "garbage", "other_key"])
def test_damaged_file_is_regenerated(cache_folder: Path, damage: str, caplog: pytest.LogCaptureFixture) -> None:
    fresh = SynthBirds("test", per_class=1, num_classes=2, progress=False)
    (path,) = _files(cache_folder)
    raw = bytearray(path.read_bytes())
    if damage == "flip":  # inside the image bytes: torch.load succeeds, the checksum does not
        blob = torch.load(path, weights_only=True)
        blob["payload"]["images"].view(-1)[5] ^= 1
        torch.save(blob, path)
    elif damage == "truncate":
        path.write_bytes(bytes(raw[: len(raw) // 2]))
    elif damage == "garbage":
        path.write_bytes(b"not a torch file")
    else:
        blob = torch.load(path, weights_only=True)
        blob["key"] = "0" * 32
        torch.save(blob, path)
    _forget()
    again = SynthBirds("test", per_class=1, num_classes=2, progress=False)
    assert torch.equal(again.images, fresh.images) and again.annotations == fresh.annotations
    assert "regenerating" in caplog.text
    caplog.clear()
    _forget()
    SynthBirds("test", per_class=1, num_classes=2, progress=False)  # the rewritten file is valid again
    assert "regenerating" not in caplog.text


def test_unwritable_cache_still_returns_the_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    monkeypatch.setenv("XCORR_DATA_CACHE", str(blocker / "sub"))  # a folder inside a file: cannot be created
    _forget()
    ds = SynthBirds("test", per_class=1, num_classes=2, progress=False)
    assert ds.images.shape == (2, 3, 112, 112)


def test_cache_dir_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XCORR_DATA_CACHE", "off")
    assert cache.cache_dir() is None
    monkeypatch.delenv("XCORR_DATA_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert cache.cache_dir() == tmp_path / "xcorr" / "data"
