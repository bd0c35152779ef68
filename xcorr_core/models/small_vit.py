"""The small ViT shipped for SynthBirds: a torchvision ``VisionTransformer`` (patch 16 at 112 px, so a
7 x 7 token grid like the SmallResNet's layer4; 4 blocks of width 96), taking images in [0, 1].

torchvision is a core dependency, so the demo's "same explanations on a ViT" section needs no extra.
Layers: ``encoder.layers.encoder_layer_K`` (tokens `[B, 1 + 49, 96]`, read as a `[B, 96, 7, 7]` grid by
`xcorr_core.FeatureExtractor`). Depends on torch and torchvision.
"""
from __future__ import annotations

from typing import Any

from torch import nn

__all__ = ["small_vit", "VIT_ARGS"]

#: constructor arguments of the shipped ViT (also stored in its checkpoint)
VIT_ARGS: dict[str, Any] = {"image_size": 112, "patch_size": 16, "num_layers": 4, "num_heads": 3, "hidden_dim": 96, "mlp_dim": 192,
                            "dropout": 0.0, "attention_dropout": 0.0}


def small_vit(num_classes: int = 24, **overrides: Any) -> nn.Module:
    """A small torchvision ViT classifier (``VIT_ARGS`` with ``overrides``)."""
    from torchvision.models import VisionTransformer

    return VisionTransformer(**(VIT_ARGS | overrides), num_classes=num_classes)
