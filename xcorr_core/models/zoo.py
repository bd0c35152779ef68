"""Loading models: the shipped SynthBirds / SynthHerd models, and torchvision backbones
with weights from a path (or torchvision's weight enums when you have a network).

All checkpoints are read with ``torch.load(..., weights_only=True)``: no pickle
code runs from a file.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from ..errors import IndexFileError, InputError
from ..fileio import atomic_write
from ..validation import check_images, check_tensor
from .preprocess import Preprocess
from .shipped import ShippedWeights
from .small_resnet import SmallResNet

__all__ = ["check_state_dict", "check_model_images", "takes_unit_images", "load_pretrained", "save_checkpoint", "save_vit_checkpoint", "load_checkpoint", "torchvision_backbone", "imagenet_normalize", "model_card", "SHIPPED",
           "read_state_dict"]

SHIPPED: dict[str, str] = {
    "birds": "SmallResNet classifier for SynthBirds (24 classes, 112 px, layer4 7x7x256)",
    "herd": "SmallResNet embedding for SynthHerd re-identification (128-d cosine, 112 px, layer4 7x7x256)",
    "birds_vit": "small torchvision ViT classifier for SynthBirds (24 classes, 112 px, patch 16: 1 + 7x7 tokens x 96, 4 blocks)",
}
_FILES = {"birds": "birds_smallresnet.pt", "herd": "herd_smallresnet.pt", "birds_vit": "birds_vit.pt"}
_FORMAT = "xcorr.checkpoint/1"


def save_checkpoint(model: SmallResNet, path: str | Path, *, meta: dict[str, Any] | None = None, half: bool = True) -> Path:
    """Save a SmallResNet (architecture args + state dict, float16 by default) atomically."""
    state = {k: (v.half() if half and v.is_floating_point() else v) for k, v in model.state_dict().items()}
    payload = {"format": _FORMAT, "arch": "SmallResNet", "out_dim": model.out_dim, "head": model.head,
               "widths": list(model.widths), "state_dict": state, "meta": json.dumps(meta or {})}
    return atomic_write(path, lambda f: torch.save(payload, f))


def save_vit_checkpoint(model: nn.Module, args: dict[str, Any], path: str | Path, *, meta: dict[str, Any] | None = None) -> Path:
    """Save a torchvision ``VisionTransformer`` built with ``args`` (its constructor arguments) atomically, float16."""
    state = {k: v.half() if v.is_floating_point() else v for k, v in model.state_dict().items()}
    payload = {"format": _FORMAT, "arch": "VisionTransformer", "args": json.dumps(args), "state_dict": state,
               "meta": json.dumps(meta or {})}
    return atomic_write(path, lambda f: torch.save(payload, f))


def _load_vit(payload: dict[str, Any], path: Path) -> nn.Module:
    from torchvision.models import VisionTransformer

    model = VisionTransformer(**json.loads(payload["args"]))
    try:
        model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in payload["state_dict"].items()})
    except RuntimeError as exc:
        raise IndexFileError(f"{path} does not match its VisionTransformer arguments: {exc}") from exc
    return model.eval()


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> Any:
    """Load a checkpoint written by `save_checkpoint` (a SmallResNet) or `save_vit_checkpoint` (weights only, validated)."""
    path = Path(path)
    if not path.is_file():
        raise IndexFileError(f"no checkpoint at {path}")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:
        raise IndexFileError(f"{path} is not a readable checkpoint ({type(exc).__name__}: {exc})") from exc
    if isinstance(payload, dict) and payload.get("format") == _FORMAT and payload.get("arch") == "VisionTransformer":
        return _load_vit(payload, path)
    if not isinstance(payload, dict) or payload.get("format") != _FORMAT or payload.get("arch") != "SmallResNet":
        raise IndexFileError(f"{path} is not an xcorr SmallResNet checkpoint")
    model = SmallResNet(payload["out_dim"], payload["head"], tuple(payload["widths"]))
    try:
        model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in payload["state_dict"].items()})
    except RuntimeError as exc:
        raise IndexFileError(f"{path} does not match the SmallResNet architecture: {exc}") from exc
    return model.eval()


WEIGHTS = ShippedWeights("xcorr_core", "scripts/train_models.py")


def model_card() -> dict[str, Any]:
    """Training figures of the shipped models (from ``weights/model_card.json``)."""
    return WEIGHTS.card()


def load_pretrained(name: Literal["birds", "herd", "birds_vit"]) -> Any:
    """A shipped model in eval mode, taking images in [0, 1]: ``"birds"`` (classifier), ``"herd"``
    (re-ID embedding) or ``"birds_vit"`` (a small ViT classifier, `models.small_vit`)."""
    if name not in SHIPPED:
        raise InputError(f"no shipped model {name!r}; shipped: {', '.join(SHIPPED)}")
    model = load_checkpoint(WEIGHTS.require(_FILES[name]))
    if name == "birds_vit":
        model.xcorr_preprocess = Preprocess(size=None, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))  # [0, 1] images as they are
    return model


def read_state_dict(path: str | Path, wrappers: tuple[str, ...] = ("state_dict", "model")) -> dict[str, torch.Tensor]:
    """A state dict from a file, read with ``weights_only=True`` (no pickle code runs).

    Checkpoints that hold the state dict under one of ``wrappers`` (e.g. ``{"state_dict": ...}``)
    are unwrapped. Missing or unreadable files raise `IndexFileError`.
    """
    path = Path(path)
    if not path.is_file():
        raise IndexFileError(f"no weights file at {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise IndexFileError(f"{path} is not a readable weights file ({type(exc).__name__}: {exc})") from exc
    for key in wrappers:
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise IndexFileError(f"{path} holds no state dict")
    return state


def check_state_dict(state: dict[Any, Any], path: str | Path) -> dict[str, torch.Tensor]:
    """``state`` if it is a state dict of finite tensors keyed by strings; else `IndexFileError` naming
    the first offending keys (a hand-edited or corrupt file, or NaN weights that would give NaN outputs)."""
    bad_keys = [repr(k) for k in state if not isinstance(k, str)]
    if bad_keys:
        raise IndexFileError(f"{path}: a state dict's keys are parameter names (str); found {', '.join(bad_keys[:5])}")
    not_tensors = [f"{k} ({type(v).__name__})" for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if not_tensors:
        raise IndexFileError(f"{path}: a state dict holds tensors; these are not: {', '.join(not_tensors[:5])}")
    non_finite = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if non_finite:
        raise IndexFileError(f"{path}: NaN/inf weights in {', '.join(non_finite[:5])}{' ...' if len(non_finite) > 5 else ''}")
    return state


def takes_unit_images(model: nn.Module) -> bool:
    """Does ``model`` expect images in [0, 1]? The shipped SmallResNets and ViT, and every model whose
    normalisation is baked in (``model.xcorr_preprocess``, set by `load_named_model` / `load_pretrained`)."""
    return isinstance(model, SmallResNet) or hasattr(model, "xcorr_preprocess")


def check_model_images(model: nn.Module, images: object, name: str = "images") -> torch.Tensor:
    """The one check of images a model is about to see: RGB `[B, 3, H, W]` floats without NaN/inf,
    and in [0, 1] when the model takes unit images (`takes_unit_images`: 0-255 floats or 1-channel
    images are refused with the conversion to use, instead of a different answer)."""
    x = check_images(images, unit_range=takes_unit_images(model), name=name)
    return check_tensor(name, x, finite=True)


def imagenet_normalize() -> nn.Module:
    """The ImageNet mean/std normalisation torchvision models expect (inputs in [0, 1])."""
    from torchvision import transforms as T

    return T.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])


def torchvision_backbone(arch: Literal["resnet50", "vgg16", "resnet18", "resnet101"], weights: str | Path | None = None,
                         *, enum: str | None = None, num_classes: int | None = None, normalize: bool = False) -> nn.Module:
    """A torchvision model with weights from a file you give, or from a weight enum.

    Args:
        arch: torchvision constructor name.
        weights: path to a state dict (``.pt``/``.pth``) saved from the same architecture;
            loaded with ``weights_only=True``. A checkpoint dict with a ``state_dict`` key also works.
        enum: name of a torchvision weight enum such as ``"IMAGENET1K_V2"`` (needs a network
            the first time; torchvision caches the file).
        num_classes: replace the classifier's output size (e.g. 200 for CUB) before loading.
        normalize: bake ImageNet normalisation into the model (a forward pre-hook), so it takes
            images in [0, 1] like the shipped models; layer names are unchanged.

    Returns the model in eval mode. Without ``normalize``, inputs must be normalised with
    `imagenet_normalize`.
    """
    import torchvision

    if arch not in ("resnet50", "vgg16", "resnet18", "resnet101"):
        raise InputError(f"unsupported arch {arch!r}")
    if weights is not None and enum is not None:
        raise InputError("give either weights (a path) or enum, not both")
    ctor = getattr(torchvision.models, arch)
    kwargs: dict[str, Any] = {}
    if num_classes is not None:
        kwargs["num_classes"] = num_classes
    model = ctor(weights=enum, **kwargs) if enum is not None else ctor(weights=None, **kwargs)
    if weights is not None:
        path = Path(weights)
        state = read_state_dict(path)
        try:
            model.load_state_dict(state)
        except RuntimeError as exc:
            raise IndexFileError(f"{path} does not fit torchvision {arch}: {exc}") from exc
    if normalize:
        norm = imagenet_normalize()
        model.register_forward_pre_hook(lambda _m, args: (norm(args[0]), *args[1:]))
    return model.eval()
