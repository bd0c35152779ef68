"""LRP with zennit for a metric model compared by cosine: the composite (EpsilonPlus with the
right canonizer), the closed-form relevance seed, and a context that captures one layer.

zennit registers hooks that keep the *last* forward's tensors, so every backward pass here
belongs to the forward it was made from (both images go through one batched forward).
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

import xcorr_core as xc

__all__ = ["default_composite", "cosine_seed", "captured_forward"]


def default_composite(model: nn.Module, canonizers: list[Any] | None = None) -> Any:
    """zennit's EpsilonPlus (ZPlus on convolutions, Epsilon on linear layers) with BatchNorm
    merged by a canonizer: ``ResNetCanonizer`` for models built of torchvision ResNet blocks
    (also xcorr's SmallResNet), ``VGGCanonizer`` for torchvision VGG, else a generic
    ``SequentialMergeBatchNorm``. Pass ``canonizers`` for other architectures."""
    import torchvision
    from zennit.canonizers import SequentialMergeBatchNorm
    from zennit.composites import EpsilonPlus
    from zennit.torchvision import ResNetCanonizer, VGGCanonizer

    if canonizers is None:
        blocks = (torchvision.models.resnet.BasicBlock, torchvision.models.resnet.Bottleneck)
        if any(isinstance(m, blocks) for m in model.modules()):
            canonizers = [ResNetCanonizer()]
        elif isinstance(model, torchvision.models.VGG):
            canonizers = [VGGCanonizer()]
        else:
            canonizers = [SequentialMergeBatchNorm()]
    return EpsilonPlus(canonizers=canonizers)


def cosine_seed(ea: torch.Tensor, eb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """cos(ea, eb) and its gradients w.r.t. ``ea`` and ``eb`` `[D]`, in closed form:
    d cos / d ea = eb / (|ea| |eb|) - cos * ea / |ea|^2."""
    na, nb = ea.norm(), eb.norm()
    if float(na) == 0 or float(nb) == 0:
        raise xc.InputError("an embedding is zero; cosine similarity is undefined")
    cos = (ea @ eb) / (na * nb)
    return cos, eb / (na * nb) - cos * ea / na**2, ea / (na * nb) - cos * eb / nb**2


@contextlib.contextmanager
def captured_forward(model: nn.Module, layer: str, composite: Any | None) -> Iterator[tuple[nn.Module, dict[str, torch.Tensor]]]:
    """Inside: the model with ``composite`` registered (or plain), and a dict that receives the
    output of ``layer`` under key ``"a"`` at each forward. Every hook is removed on exit,
    also when an exception is raised; the model's train/eval mode is never changed."""
    modules = dict(model.named_modules())
    if layer not in modules or not layer:
        raise xc.LayerNotFoundError(f"model {type(model).__name__} has no layer {layer!r}; valid: {', '.join(xc.layer_names(model))}")
    if model.training:
        raise xc.InputError("put the model in eval mode (model.eval()) before explaining: LRP merges BatchNorm statistics")
    store: dict[str, torch.Tensor] = {}
    handle = modules[layer].register_forward_hook(lambda _m, _i, out: store.__setitem__("a", out))
    try:
        if composite is None:
            yield model, store
        else:
            with composite.context(model) as modified:
                yield modified, store
    finally:
        handle.remove()
