"""g for models whose decision network is not a torchvision ResNet or VGG: timm ViTs / DeiTs (with
register tokens), Swin, EfficientNets and ConvNeXts, and torchvision ViTs, each cut after a child of
its block container (``blocks.K``, ``stages.K``, ``layers.K``, ``encoder.layers.encoder_layer_K``).

g takes f's cells `[B, d, h, w]` (`xcorr_core.FeatureExtractor` reads every layout as cells) and puts
them back in the layout the next block expects: channels-last for Swin, tokens for ViTs. A ViT's prefix
tokens (CLS, registers, distillation) are not cells: f records them (`TokenTail.remember`) and g puts
the *query's* back in front of the edited cells, so an edit changes patch tokens only, as the search
assumes. Depends on torch and xcorr_core only.
"""
from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from xcorr_core.errors import InputError, LayerNotFoundError

__all__ = ["ContainerTail", "TokenTail", "tail_for"]

#: class name -> (container, modules after it, the container's layout, how the head is applied)
_TIMM = {
    "EfficientNet": ("blocks", ("conv_head", "bn2"), "channels_first"),
    "ConvNeXt": ("stages", ("norm_pre",), "channels_first"),
    "SwinTransformer": ("layers", ("norm",), "channels_last"),
    "VisionTransformer": ("blocks", ("norm",), "tokens"),
}


class ContainerTail(nn.Module):
    """g = the container's children after the cut, the modules after the container, then the model's
    own head (timm ``forward_head``, or torchvision ViT's CLS token + ``heads``)."""

    def __init__(self, model: nn.Module, rest: list[nn.Module], after: list[nn.Module], layout: Literal["channels_first", "channels_last"]) -> None:
        super().__init__()
        self.model = model  # for its head; its other modules are only read through rest / after
        self.rest, self.after, self.layout = nn.ModuleList(rest), nn.ModuleList(after), layout

    def _head(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.forward_head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.layout == "channels_last":
            x = x.permute(0, 2, 3, 1)
        for m in [*self.rest, *self.after]:
            x = m(x)
        return self._head(x)


class TokenTail(ContainerTail):
    """g of a ViT: cells `[B, d, h, w]` -> patch tokens behind the query's prefix tokens -> the remaining
    blocks, the final norm and the head. ``prefix`` `[B or 1, P, d]` is what f last recorded: a batch of
    cells whose size equals the recorded rows uses them row by row; any other batch uses the first row
    (the query, in `counterfactual`: f runs on the query first)."""

    def __init__(self, model: nn.Module, rest: list[nn.Module], after: list[nn.Module], torchvision_vit: bool = False) -> None:
        super().__init__(model, rest, after, "channels_first")
        self.torchvision_vit = torchvision_vit
        self.prefix: torch.Tensor | None = None

    def remember(self, prefix: torch.Tensor) -> None:
        self.prefix = prefix.detach()

    def _head(self, x: torch.Tensor) -> torch.Tensor:
        if self.torchvision_vit:
            return self.model.heads(x[:, 0])
        return self.model.forward_head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.prefix is None:
            raise InputError("the ViT's g needs the query's prefix tokens: compute the features with the split's f first "
                             "(ModelSplit.features)")
        p = self.prefix if self.prefix.shape[0] == x.shape[0] else self.prefix[:1].expand(x.shape[0], -1, -1)
        tokens = torch.cat([p.to(x.dtype), x.flatten(2).transpose(1, 2)], dim=1)
        for m in [*self.rest, *self.after]:
            tokens = m(tokens)
        return self._head(tokens)


def _cut(container: nn.Module, prefix: str, layer: str, model: nn.Module) -> int:
    names = [f"{prefix}.{i}" for i in range(len(container))]
    if layer not in names:
        raise LayerNotFoundError(f"cannot cut {type(model).__name__} at {layer!r}: use one of {', '.join(names)}")
    return names.index(layer)


def tail_for(model: nn.Module, layer: str) -> ContainerTail | None:
    """g for a known architecture cut after ``layer``; None when this module does not know the model."""
    import torchvision

    if isinstance(model, torchvision.models.VisionTransformer):
        layers = model.encoder.layers
        k = _cut(layers, "encoder.layers", layer.replace("encoder_layer_", ""), model) if layer.startswith("encoder.layers.") else -1
        if k < 0:
            raise LayerNotFoundError(f"cut a torchvision ViT after an encoder layer: encoder.layers.encoder_layer_K (K < {len(layers)})")
        return TokenTail(model, list(layers)[k + 1:], [model.encoder.ln], torchvision_vit=True).train(model.training)
    entry = next((_TIMM[c.__name__] for c in type(model).__mro__ if c.__name__ in _TIMM), None)  # subclasses too (DeiT distilled)
    if entry is None or not hasattr(model, "forward_head") or not type(model).__module__.startswith("timm."):
        return None
    container_name, after_names, layout = entry
    container = getattr(model, container_name)
    k = _cut(container, container_name, layer, model)
    rest, after = list(container)[k + 1:], [getattr(model, a) for a in after_names]
    tail = TokenTail(model, rest, after) if layout == "tokens" else ContainerTail(model, rest, after, layout)  # type: ignore[arg-type]
    return tail.train(model.training)  # the wrapper follows the model's mode (`in_training` reads it)
