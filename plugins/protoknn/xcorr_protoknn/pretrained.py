"""Saving and loading ProtoKNN models; the model shipped for SynthBirds.

The file holds the backbone (a SmallResNet, with its architecture), the add-on, the auxiliary
head, the (projected) prototypes and the projection record, in float16, read back with
``torch.load(weights_only=True)``. The shipped model was trained by
``plugins/protoknn/scripts/train_protoknn.py`` on SynthBirds train (seed 0, 30 per class), whose
images its projection record refers to. Depends on torch, the core and this plugin.
"""
from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import torch

from xcorr_core.errors import IndexFileError
from xcorr_core.fileio import atomic_write
from xcorr_core.models import ShippedWeights, SmallResNet, read_state_dict

from .model import ProtoKNNNet
from .projection import ProjectionResult

__all__ = ["save_model", "load_model", "load_pretrained", "shipped_path", "model_card", "WEIGHTS"]

_FORMAT = "xcorr.protoknn/1"


WEIGHTS = ShippedWeights("xcorr_protoknn", "plugins/protoknn/scripts/train_protoknn.py")


def shipped_path() -> Path:
    return WEIGHTS.path("protoknn_smallresnet.pt")


def model_card() -> dict[str, Any]:
    """Training figures of the shipped ProtoKNN (``weights/protoknn_card.json``)."""
    return WEIGHTS.card("protoknn_card.json")


def save_model(model: ProtoKNNNet, path: str | Path, *, projection: ProjectionResult | None = None, meta: dict[str, Any] | None = None) -> Path:
    """Write a ProtoKNN model whose backbone is a `SmallResNet` (float16), atomically."""
    bb = model.backbone
    if not isinstance(bb, SmallResNet):
        raise TypeError("save_model stores SmallResNet backbones; save other models' state_dict() yourself")
    payload = {"format": _FORMAT, "backbone": {"out_dim": bb.out_dim, "head": bb.head, "widths": list(bb.widths)},
               "layer": model.layer, "channels": model.channels, "dim": model.dim, "addon_activation": model.addon_activation,
               "state_dict": {k: v.half() if v.is_floating_point() else v for k, v in model.state_dict().items()},
               "projection": projection.to_json() if projection is not None else "", "meta": json.dumps(meta or {})}
    buf = io.BytesIO()
    torch.save(payload, buf)
    return atomic_write(path, lambda f: f.write(buf.getvalue()))


def load_model(path: str | Path) -> tuple[ProtoKNNNet, ProjectionResult | None]:
    """``(model in eval mode, projection record or None)`` from a file written by `save_model`."""
    path = Path(path)
    payload = read_state_dict(path, wrappers=())
    if payload.get("format") != _FORMAT:
        raise IndexFileError(f"{path} is not an xcorr ProtoKNN model file")
    b = payload["backbone"]
    backbone = SmallResNet(b["out_dim"], b["head"], tuple(b["widths"]))
    state = {k: v.float() if v.is_floating_point() else v for k, v in payload["state_dict"].items()}
    protos = state["profile.prototypes"]
    model = ProtoKNNNet(backbone, payload["layer"], payload["channels"], dim=payload["dim"], prototypes=protos,
                        addon_activation=payload["addon_activation"])
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise IndexFileError(f"{path} does not fit the ProtoKNN architecture: {exc}") from exc
    proj = ProjectionResult.from_json(payload["projection"]) if payload["projection"] else None
    return model.eval(), proj


def load_pretrained() -> ProtoKNNNet:
    """The shipped SynthBirds ProtoKNN (images `[B, 3, 112, 112]` in [0, 1], as the shipped classifier).
    Its ``profiles(images)`` gives `[B, 128]`."""
    return load_model(WEIGHTS.require("protoknn_smallresnet.pt"))[0]
