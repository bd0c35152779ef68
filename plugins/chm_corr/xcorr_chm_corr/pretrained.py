"""The small CHM shipped with the plugin: a CHM head on the core's shipped SynthBirds
SmallResNet (layer4, 256 x 7 x 7 at 112 px, frozen), trained by ``scripts/train_chm.py``.

The file holds only the head (float16) and its card; the backbone is the core's
``load_pretrained("birds")``, so a `CHMNet` from `load_pretrained` takes SynthBirds images
as the shipped classifier does ([0, 1], 112 px) and its features are the maps the demo
pipeline stores, which lets the re-ranker match stored maps directly.
Depends on torch, the core's model loading and `chmnet`.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from xcorr_core.errors import IndexFileError
from xcorr_core.fileio import atomic_write
from xcorr_core.models import load_pretrained as load_core_model
from xcorr_core.models import ShippedWeights, check_state_dict, read_state_dict

from .chmnet import CHMNet

__all__ = ["load_pretrained", "save_head", "load_head", "model_card", "shipped_path", "vit_head_path", "SHIPPED_LAYER",
           "SHIPPED_FEAT_DIM", "WEIGHTS"]

SHIPPED_LAYER = "layer4"
SHIPPED_FEAT_DIM = 256
_FORMAT = "xcorr.chm_head/1"


WEIGHTS = ShippedWeights("xcorr_chm_corr", "plugins/chm_corr/scripts/train_chm.py")


def shipped_path() -> Path:
    return WEIGHTS.path("chm_smallresnet.pt")


def model_card() -> dict[str, Any]:
    """Training figures of the shipped CHM (``weights/chm_card.json``)."""
    return WEIGHTS.card("chm_card.json")


def save_head(model: CHMNet, path: str | Path, *, meta: dict[str, Any] | None = None, backbone: str = "birds") -> Path:
    """Write the CHM head of ``model`` (float16) atomically. ``backbone``: the model name `load_pretrained`
    rebuilds the backbone from (a shipped name such as ``"birds"`` / ``"birds_vit"``, or ``timm:NAME`` ...)."""
    state = {k: v.detach().half() for k, v in model.learner.state_dict().items()}
    payload = {"format": _FORMAT, "feat_dim": model.feat_dim, "ktype": model.ktype, "layer": model.layer or "",
               "backbone": backbone, "state_dict": state, "meta": json.dumps(meta or {})}
    return atomic_write(path, lambda f: torch.save(payload, f))


def load_head(model: CHMNet, path: str | Path) -> CHMNet:
    """Load a head written by `save_head` into ``model`` (weights only; shapes checked)."""
    path = Path(path)
    payload = read_state_dict(path, wrappers=())
    if payload.get("format") != _FORMAT:
        raise IndexFileError(f"{path} is not an xcorr CHM head file")
    if payload["feat_dim"] != model.feat_dim or payload["ktype"] != model.ktype:
        raise IndexFileError(f"{path} holds a {payload['ktype']} head for {payload['feat_dim']} channels; "
                             f"the model is {model.ktype} with {model.feat_dim}")
    state = check_state_dict(payload["state_dict"], path) if isinstance(payload.get("state_dict"), dict) else None
    if state is None:
        raise IndexFileError(f"{path} holds no head state dict")
    try:
        model.learner.load_state_dict({k: v.float() for k, v in state.items()})
    except RuntimeError as exc:
        raise IndexFileError(f"{path} does not fit the CHM head: {exc}") from exc
    return model


def vit_head_path() -> Path:
    """The head shipped for the core's small SynthBirds ViT (``birds_vit``, its last block)."""
    return shipped_path().with_name("chm_birds_vit.pt")


def load_pretrained(path: str | Path | None = None) -> CHMNet:
    """A CHMNet in eval mode: the shipped SynthBirds one, the head shipped for a shipped backbone by its
    name (``"birds"``, ``"birds_vit"``), or the head file ``path`` with the backbone and layer it was
    trained for (heads written before files named their backbone: the shipped SmallResNet)."""
    from xcorr_core.models import SHIPPED
    from xcorr_core.models import load_model

    named = {"birds": shipped_path(), "birds_vit": vit_head_path()}  # the heads shipped for the core's shipped backbones
    path = named[str(path)] if str(path) in named else Path(path) if path is not None else shipped_path()
    if path.parent == WEIGHTS.root:
        WEIGHTS.require(path.name)
    elif not path.is_file():
        raise IndexFileError(f"no CHM head file at {path}")
    payload = read_state_dict(path, wrappers=())
    if payload.get("format") != _FORMAT:
        raise IndexFileError(f"{path} is not an xcorr CHM head file")
    name = str(payload.get("backbone", "birds"))
    backbone = load_core_model(name) if name in SHIPPED else load_model(name)
    model = CHMNet(backbone, str(payload.get("layer") or SHIPPED_LAYER), int(payload["feat_dim"]), ktype=payload["ktype"])
    return load_head(model, path).eval()
