"""Grad-CAM maps of any CNN at a named layer, batched: the standard map and CGC's training variant.

- ``gradcam`` (Selvaraju et al.): channel weights = spatial mean of dy_t/dA, map = ReLU(sum_c w_c A_c).
- ``gradxact`` (CGC's training map): ReLU(sum_c dy_t/dA_c * A_c), elementwise per location.

``y_t`` is the pre-softmax output of class ``t``; one backward of ``sum_b y_{b, t_b}`` serves the whole
batch (samples do not interact in eval mode, nor in train mode apart from BatchNorm's batch
statistics, which the caller chose). ``create_graph=True`` keeps the map differentiable (double
backprop), which CGC's loss needs. The forward runs through the core `FeatureExtractor`, so the model
is never modified and no hook outlives the call, even when it raises.

`captum_map` computes the same maps with captum's ``LayerGradCam`` / ``LayerGradientXActivation``
(the explainers' ``engine="captum"``); the tests check both engines agree.
Depends on torch, the core and (lazily) captum.
"""
from __future__ import annotations

import contextlib
import warnings
from typing import Any, Literal

import torch
import torch.nn.functional as F
from pydantic import ConfigDict
from torch import nn

from xcorr_core.errors import InputError
from xcorr_core.features import FeatureExtractor
from xcorr_core.results import Tensor, TensorModel
from xcorr_core.validation import check_tensor

__all__ = ["MapKind", "LayerMaps", "layer_maps", "captum_map", "upsample", "normalise_mass"]

MapKind = Literal["gradcam", "gradxact"]


class LayerMaps(TensorModel):
    """Maps at the layer and what produced them.

    Attributes:
        maps: `[B, h, w]` maps at the layer's resolution (non-negative after the ReLU).
        logits: `[B, K]` the model's outputs.
        targets: `[B]` the class each map explains.
        activations: `[B, C, h, w]` the layer's activations (part of the graph when ``create_graph``).
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)
    maps: Tensor
    logits: Tensor
    targets: Tensor
    activations: Tensor


def _check_targets(targets: torch.Tensor | int | None, logits: torch.Tensor) -> torch.Tensor:
    if targets is None:
        return logits.detach().argmax(1)
    t = torch.as_tensor(targets, device=logits.device)
    if t.ndim == 0:
        t = t.expand(logits.shape[0])
    t = check_tensor("targets", t, shape=(logits.shape[0],), floating=False).long()
    if bool(((t < 0) | (t >= logits.shape[1])).any()):
        raise InputError(f"targets must be class ids in [0, {logits.shape[1]}), got {t.tolist()}")
    return t


def _math_attention() -> Any:
    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel([SDPBackend.MATH])


def layer_maps(model: nn.Module, images: torch.Tensor, layer: str, targets: torch.Tensor | int | None = None, *,
               kind: MapKind = "gradcam", create_graph: bool = False, relu: bool = True) -> LayerMaps:
    """Grad-CAM (``kind="gradcam"``) or gradient x activation (``"gradxact"``) maps at ``layer``.

    Args:
        model: a classifier returning logits `[B, K]`; not modified.
        images: `[B, 3, H, W]` as the model takes them.
        layer: dotted name of a module whose output is `[B, C, h, w]` (e.g. ``"layer4"``).
        targets: `[B]` classes to explain (an int for all); default: the model's top-1 per image.
        kind: the map rule (see the module docstring).
        create_graph: keep the map differentiable w.r.t. the model's parameters (for losses).
        relu: apply the final ReLU (both published rules do).
    """
    if kind not in ("gradcam", "gradxact"):
        raise InputError(f"kind must be 'gradcam' or 'gradxact', got {kind!r}")
    if not any(p.requires_grad for p in model.parameters()):
        images = images.detach().requires_grad_(True)  # a frozen model: the graph must still reach the layer
    # the loss differentiates the maps again: fused attention kernels have no double backward on the CPU,
    # so transformers run the math kernel then (CNNs have no attention; nothing changes for them)
    with torch.enable_grad(), (_math_attention() if create_graph else contextlib.nullcontext()):
        feats = FeatureExtractor(model, [layer], stop_early=False, grad=True)(images, return_output=True)
        acts, logits = feats.maps[layer], feats.output
        if logits is None or logits.ndim != 2:
            raise InputError(f"the model must return logits [B, K]; got {None if logits is None else list(logits.shape)}")
        if acts.ndim != 4 or acts.shape[-1] * acts.shape[-2] < 1:
            raise InputError(f"layer {layer!r} must output a spatial map [B, C, h, w], got {list(acts.shape)}")
        if not acts.requires_grad:
            raise InputError(f"layer {layer!r} has no gradient path (is it under torch.no_grad() inside the model?)")
        t = _check_targets(targets, logits)
        y = logits.gather(1, t[:, None]).sum()
        (grads,) = torch.autograd.grad(y, acts, create_graph=create_graph)
        if feats.layouts[layer].is_tokens and not bool(grads.detach().any()):
            warnings.warn(f"the logits do not depend on the patch tokens of layer {layer!r} (all gradients are zero), so its "
                          "maps are all zero: with CLS-token pooling the last block's patch tokens are not used, so explain an "
                          "earlier block (e.g. the second-to-last) or a model that pools the mean patch token; or the head is all "
                          "zero (torchvision initialises a ViT's head to zero: train it first)", UserWarning, stacklevel=2)
    if kind == "gradcam":
        m = (grads.mean(dim=(2, 3), keepdim=True) * acts).sum(1)
    else:
        m = (grads * acts).sum(1)
    if relu:
        m = F.relu(m)
    if not create_graph:
        m, logits, acts = m.detach(), logits.detach(), acts.detach()
    return LayerMaps(maps=m, logits=logits, targets=t, activations=acts)


def captum_map(model: nn.Module, images: torch.Tensor, layer: str, targets: torch.Tensor, *, kind: MapKind = "gradcam") -> torch.Tensor:
    """The same maps `[B, h, w]` through captum (``LayerGradCam``; ``LayerGradientXActivation`` summed
    over channels, then ReLU). ``targets`` `[B]` are required (captum has no top-1 default)."""
    from captum.attr import LayerGradCam, LayerGradientXActivation

    module = dict(model.named_modules()).get(layer)
    if module is None or not layer:
        raise InputError(f"model {type(model).__name__} has no layer {layer!r}")
    if kind == "gradcam":
        out = LayerGradCam(model, module).attribute(images, target=targets.tolist(), relu_attributions=True)
        return out[:, 0].detach()
    out = LayerGradientXActivation(model, module, multiply_by_inputs=True).attribute(images, target=targets.tolist())
    return F.relu(out.sum(1)).detach()


def upsample(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of `[B, h, w]` maps to ``size`` (``align_corners=False``, as the authors)."""
    check_tensor("maps", maps, ndim=3, floating=True, finite=True, non_empty=True)
    if tuple(maps.shape[-2:]) == tuple(size):
        return maps
    return F.interpolate(maps[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]


def normalise_mass(maps: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """CGC's normalisation ``M / (sum M + eps) + eps`` per map `[B, H, W]`."""
    check_tensor("maps", maps, floating=True, finite=True, non_empty=True)
    return maps / (maps.sum(dim=(-2, -1), keepdim=True) + eps) + eps
