"""`load_model`: a model by the name a pipeline spec gives (``features.model``): shipped, named by a
plugin, a checkpoint file, or a user's timm / torchvision / Hugging Face / open_clip model.
Depends on the core's errors, registry and models modules.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from .. import registry
from ..errors import ConfigError

__all__ = ["load_model"]


def load_model(name: str, weights: str | Path | None = None, **kwargs: Any) -> nn.Module:
    """A model by name: shipped (``"birds"``, ``"herd"``), named by a plugin's ``register_models``, a
    SmallResNet checkpoint file, or a user's model ``timm:NAME`` / ``torchvision:NAME`` / ``hf:PATH`` /
    ``open_clip:NAME`` with local ``weights`` (see `xcorr_core.models.load_named_model`). Raises
    `ConfigError` listing the known names otherwise."""
    from . import NAMED_PREFIXES, SHIPPED, load_checkpoint, load_named_model, load_pretrained

    if name.partition(":")[0] in NAMED_PREFIXES and ":" in name:
        return load_named_model(name, weights, **kwargs)
    if weights is not None or kwargs:
        raise ConfigError(f"features.weights / model_kwargs apply to timm: / torchvision: / hf: / open_clip: models, not {name!r}",
                          field="features.weights")
    if name in SHIPPED:
        return load_pretrained(name)  # type: ignore[arg-type]
    named = registry.models()
    if name in named:
        return named[name][1]()
    if Path(name).is_file():
        return load_checkpoint(name)
    known = ", ".join(list(SHIPPED) + sorted(named))
    raise ConfigError(f"features.model: {name!r} is neither a shipped or plugin model ({known}), a checkpoint file, nor "
                      "timm:NAME / torchvision:NAME / hf:PATH / open_clip:NAME", field="features.model")
