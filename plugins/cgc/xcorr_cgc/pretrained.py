"""The models shipped with the plugin: the SynthBirds classifier fine-tuned by the study (seed 0)
with CE only (``"ce"``) and with CE + CGC (``"cgc"``), written by ``scripts/cgc_study.py`` as core
SmallResNet checkpoints (float16). Depends on the core."""
from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Literal

from xcorr_core.errors import InputError, IndexFileError
from xcorr_core.models import SmallResNet, load_checkpoint

__all__ = ["load_pretrained", "shipped_path"]


def shipped_path(which: Literal["ce", "cgc"]) -> Path:
    if which not in ("ce", "cgc"):
        raise InputError(f"which must be 'ce' or 'cgc', got {which!r}")
    return Path(str(resources.files("xcorr_cgc") / "weights" / f"birds_{which}.pt"))


def load_pretrained(which: Literal["ce", "cgc"] = "cgc") -> SmallResNet:
    """The shipped fine-tuned classifier (eval mode); `IndexFileError` if the file is missing."""
    path = shipped_path(which)
    if not path.is_file():
        raise IndexFileError(f"no shipped model at {path}: run plugins/cgc/scripts/cgc_study.py")
    return load_checkpoint(path)
