"""Users' models by name: ``timm:NAME``, ``torchvision:NAME``, ``hf:PATH`` and ``open_clip:NAME``, with
weights from a local file (or the hub's, for users with a network), and each model's own input size
and normalisation baked in as a forward pre-hook so that it takes images in [0, 1] like the shipped
models. Layer names are unchanged (the hook sits on the model itself).

timm, transformers and open_clip are optional (``pip install 'xcorr-core[timm]'`` etc.): each is
imported only when a name asks for it, and a missing one raises `ConfigError` naming the extra.
Weights files are read without pickle code: ``torch.load(..., weights_only=True)`` or safetensors.
Depends on torch, torchvision and the core's errors/models modules.
"""
from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import ConfigError, IndexFileError
from .preprocess import Preprocess, add_preprocess
from .zoo import check_state_dict, read_state_dict

__all__ = ["Preprocess", "load_named_model", "add_preprocess", "NAMED_PREFIXES", "read_weights"]

NAMED_PREFIXES = ("timm", "torchvision", "hf", "open_clip")
_EXTRA = {"timm": ("timm", "timm"), "hf": ("transformers", "hf"), "open_clip": ("open_clip", "open_clip")}
_IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


def read_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict from ``.safetensors`` or a torch file (``weights_only``; ``state_dict`` / ``model`` wrappers unwrapped)."""
    path = Path(path)
    if path.suffix == ".safetensors":
        if not path.is_file():
            raise IndexFileError(f"no weights file at {path}")
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as exc:
            raise IndexFileError(f"{path} is not a readable safetensors file ({type(exc).__name__}: {exc})") from exc
    return read_state_dict(path)


def _load_into(model: nn.Module, path: str | Path, what: str) -> None:
    state = check_state_dict(read_weights(path), path)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise IndexFileError(f"{path} does not fit {what}: {exc}") from exc


def _import(prefix: str) -> Any:
    mod, extra = _EXTRA[prefix]
    try:
        return importlib.import_module(mod)
    except ImportError as exc:
        raise ConfigError(f"features.model '{prefix}:...' needs the {mod} package: pip install 'xcorr-core[{extra}]' ({exc})",
                          field="features.model") from exc


def _timm(name: str, weights: Path | None, pretrained: bool, kwargs: dict[str, Any]) -> tuple[nn.Module, Preprocess]:
    timm = _import("timm")
    try:
        model = timm.create_model(name, pretrained=pretrained, **kwargs)
    except RuntimeError as exc:
        raise ConfigError(f"features.model: timm has no model {name!r} ({exc})", field="features.model") from exc
    if weights is not None:
        _load_into(model, weights, f"timm {name}")
    cfg = timm.data.resolve_model_data_config(model)
    size = tuple(cfg["input_size"][-2:])
    fixed = getattr(getattr(model, "patch_embed", None), "img_size", None)  # a ViT / Swin built for another size
    if isinstance(fixed, (tuple, list)) and len(fixed) == 2:
        size = (int(fixed[0]), int(fixed[1]))
    return model, Preprocess(size=size, mean=tuple(cfg["mean"]), std=tuple(cfg["std"]))  # type: ignore[arg-type]


def _torchvision(name: str, weights: Path | None, pretrained: bool, kwargs: dict[str, Any]) -> tuple[nn.Module, Preprocess]:
    import torchvision

    if name not in torchvision.models.list_models(module=torchvision.models):
        raise ConfigError(f"features.model: torchvision has no classification model {name!r}", field="features.model")
    enum = torchvision.models.get_model_weights(name).DEFAULT
    model = torchvision.models.get_model(name, weights=enum if pretrained else None, **kwargs)
    if weights is not None:
        _load_into(model, weights, f"torchvision {name}")
    size = kwargs.get("image_size")
    crop = getattr(enum.transforms, "keywords", {}).get("crop_size") if hasattr(enum, "transforms") else None
    s = int(size) if size is not None else int(crop) if crop is not None else 224
    return model, Preprocess(size=(s, s), mean=_IMAGENET[0], std=_IMAGENET[1])


def _hf(path: str, weights: Path | None, pretrained: bool, kwargs: dict[str, Any]) -> tuple[nn.Module, Preprocess]:
    transformers = _import("hf")
    try:
        config = transformers.AutoConfig.from_pretrained(path)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"features.model: no Hugging Face model at {path!r} (a local folder with config.json, or a hub id "
                          f"with a network): {exc}", field="features.model") from exc
    if config.model_type == "clip":  # a whole CLIP checkpoint: its image encoder with the projection
        full = transformers.CLIPModel.from_pretrained(path, **kwargs)
        vcfg = transformers.CLIPVisionConfig(**config.vision_config.to_dict() | {"projection_dim": config.projection_dim})
        model = transformers.CLIPVisionModelWithProjection(vcfg)
        model.vision_model.load_state_dict(full.vision_model.state_dict())
        model.visual_projection.load_state_dict(full.visual_projection.state_dict())
    else:
        cls: Any = transformers.CLIPVisionModelWithProjection if config.model_type == "clip_vision_model" else transformers.AutoModel
        model = cls.from_pretrained(path, **kwargs)
    if weights is not None:
        _load_into(model, weights, f"Hugging Face {path}")
    vision = getattr(config, "vision_config", config)
    mean, std, size = _IMAGENET[0], _IMAGENET[1], getattr(vision, "image_size", None)
    proc = Path(path) / "preprocessor_config.json"
    if proc.is_file():
        p = json.loads(proc.read_text())
        mean, std = tuple(p.get("image_mean", mean)), tuple(p.get("image_std", std))
        crop = p.get("crop_size") or p.get("size")
        if isinstance(crop, dict):
            crop = crop.get("height") or crop.get("shortest_edge")
        size = crop or size
    sz = (int(size), int(size)) if isinstance(size, int) else None
    return model, Preprocess(size=sz, mean=mean, std=std)  # type: ignore[arg-type]


def _open_clip(name: str, weights: Path | None, pretrained: bool, kwargs: dict[str, Any]) -> tuple[nn.Module, Preprocess]:
    open_clip = _import("open_clip")
    try:
        model = open_clip.create_model(name, pretrained=(str(weights) if weights is not None else None), **kwargs)
    except RuntimeError as exc:
        raise ConfigError(f"features.model: open_clip cannot build {name!r} ({exc})", field="features.model") from exc
    visual = model.visual
    cfg = getattr(visual, "preprocess_cfg", None) or {}
    size = cfg.get("size", getattr(visual, "image_size", 224))
    size = tuple(size) if isinstance(size, (tuple, list)) else (int(size), int(size))
    return visual, Preprocess(size=size, mean=tuple(cfg.get("mean", open_clip.OPENAI_DATASET_MEAN)),  # type: ignore[arg-type]
                              std=tuple(cfg.get("std", open_clip.OPENAI_DATASET_STD)))


def load_named_model(name: str, weights: str | Path | None = None, *, pretrained: bool = False, resize: bool = True,
                     **kwargs: Any) -> nn.Module:
    """A user's model by name, in eval mode, taking images in [0, 1].

    Args:
        name: ``timm:NAME`` (e.g. ``timm:vit_small_patch16_224``), ``torchvision:NAME`` (any
            classification model, e.g. ``torchvision:swin_t``), ``hf:PATH`` (a local folder written by
            ``save_pretrained``, or a hub id; CLIP checkpoints give their image encoder) or
            ``open_clip:NAME`` (the image tower ``.visual``).
        weights: a local state dict (``.pt`` / ``.pth`` / ``.safetensors``) for that architecture;
            for open_clip, the checkpoint file open_clip reads.
        pretrained: the library's own pretrained weights (timm / torchvision; needs a network the first time).
        resize: resize inputs to the model's own input size when they differ.
        **kwargs: passed to the constructor (e.g. ``num_classes=0``, ``img_size=112`` for timm).

    The model's input size and normalisation (timm's data config, torchvision's ImageNet values,
    the folder's ``preprocessor_config.json``, open_clip's preprocess config) are applied by a
    pre-hook; ``model.xcorr_preprocess`` says which.
    """
    prefix, sep, rest = name.partition(":")
    if not sep or prefix not in NAMED_PREFIXES or not rest:
        raise ConfigError(f"features.model: {name!r} is not of the form timm:NAME, torchvision:NAME, hf:PATH or open_clip:NAME",
                          field="features.model")
    wpath = Path(weights) if weights is not None else None
    if wpath is not None and not wpath.is_file():
        raise ConfigError(f"features.weights: no file at {wpath}", field="features.weights")
    loader = {"timm": _timm, "torchvision": _torchvision, "hf": _hf, "open_clip": _open_clip}[prefix]
    model, pre = loader(rest, wpath, pretrained, dict(kwargs))
    return add_preprocess(model.eval(), pre, resize=resize)
