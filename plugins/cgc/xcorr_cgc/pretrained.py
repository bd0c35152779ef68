"""The models shipped with the plugin: the SynthBirds classifier fine-tuned by the study (seed 0)
with CE only (``"ce"``) and with CE + CGC (``"cgc"``), written by ``scripts/cgc_study.py`` as core
SmallResNet checkpoints (float16). Depends on the core."""
from __future__ import annotations

from pathlib import Path
from typing import Literal

from xcorr_core.errors import InputError
from xcorr_core.models import ShippedWeights, SmallResNet, load_checkpoint

__all__ = ["load_pretrained", "shipped_path", "WEIGHTS"]

WEIGHTS = ShippedWeights("xcorr_cgc", "plugins/cgc/scripts/cgc_study.py")


def shipped_path(which: Literal["ce", "cgc"]) -> Path:
    if which not in ("ce", "cgc"):
        raise InputError(f"which must be 'ce' or 'cgc', got {which!r}")
    return WEIGHTS.path(f"birds_{which}.pt")


def load_pretrained(which: Literal["ce", "cgc"] = "cgc") -> SmallResNet:
    """The shipped fine-tuned classifier (eval mode); `IndexFileError` if the file is missing."""
    return load_checkpoint(WEIGHTS.require(shipped_path(which).name))
