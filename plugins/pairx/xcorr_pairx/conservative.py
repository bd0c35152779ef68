"""Relevance for transformers by conservative propagation (Ali et al., ICML 2022, "XAI for Transformers:
better explanations through conservative propagation").

Gradient x input is not conservative through attention heads and LayerNorm: their backward passes
relevance through the softmax attention weights and through LayerNorm's normalising scale as if they
were inputs. Ali et al. hold both constant in the forward pass (detach them), which makes each block
linear in its value path; the rest of the network is explained by gradient x input. Here that is done
for every architecture at once by the functions their attention and normalisation call:

- ``softmax`` (``torch.nn.functional.softmax``, ``torch.softmax``, ``Tensor.softmax``): the result is
  detached. In a vision transformer every softmax inside the embedding forward is an attention's
  (torchvision Swin, Hugging Face eager attention, timm's unfused path).
- ``scaled_dot_product_attention`` (timm, Hugging Face SDPA, ``nn.MultiheadAttention`` in torchvision
  ViT and open_clip): recomputed as ``softmax(q k^T scale + mask).detach() @ v``.
- ``layer_norm``: ``(x - mean) / std.detach() * weight + bias``.

The functions are swapped only inside `ConservativePropagation.context` and restored on exit, also
after an exception; the model itself is not changed. Not thread-safe: do not run other torch code in
another thread while a context is open. Depends on torch and xcorr_core.
"""
from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

import xcorr_core as xc

__all__ = ["ConservativePropagation", "has_transformer_blocks", "constant_norm_seed"]


def has_transformer_blocks(model: nn.Module) -> bool:
    """Does ``model`` have attention or LayerNorm (ViT, DeiT, DINOv2, CLIP, Swin, ConvNeXt)?"""
    for m in model.modules():
        name = type(m).__name__
        if isinstance(m, (nn.MultiheadAttention, nn.LayerNorm)) or name.endswith(("Attention", "SelfAttention")):
            return True
    return False


def constant_norm_seed(ea: torch.Tensor, eb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """cos(ea, eb) and its gradients w.r.t. ``ea`` and ``eb`` `[D]` with the norms held constant (as
    LayerNorm's scale is): ``eb / (|ea| |eb|)`` and ``ea / (|ea| |eb|)``. Gradient x input of these
    seeds, ``ea * eb / (|ea| |eb|)``, sums to the cosine: the relevance that conservation preserves."""
    na, nb = ea.norm(), eb.norm()
    if float(na) == 0 or float(nb) == 0:
        raise xc.InputError("an embedding is zero; cosine similarity is undefined")
    d = na * nb
    return (ea @ eb) / d, eb / d, ea / d


def _sdpa(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, attn_mask: torch.Tensor | None = None,
          dropout_p: float = 0.0, is_causal: bool = False, scale: float | None = None, enable_gqa: bool = False,
          **_: Any) -> torch.Tensor:
    """Scaled dot-product attention with the attention weights held constant (no dropout: eval only)."""
    if enable_gqa and key.shape[-3] != query.shape[-3]:
        rep = query.shape[-3] // key.shape[-3]
        key, value = key.repeat_interleave(rep, -3), value.repeat_interleave(rep, -3)
    s = scale if scale is not None else 1.0 / math.sqrt(query.shape[-1])
    logits = (query @ key.transpose(-2, -1)) * s
    L, S = query.shape[-2], key.shape[-2]
    if is_causal:
        logits = logits.masked_fill(torch.ones(L, S, dtype=torch.bool, device=query.device).triu(1), float("-inf"))
    if attn_mask is not None:
        logits = logits.masked_fill(~attn_mask, float("-inf")) if attn_mask.dtype == torch.bool else logits + attn_mask
    return _ORIG["softmax"](logits, dim=-1).detach() @ value


def _layer_norm(x: torch.Tensor, normalized_shape: Any, weight: torch.Tensor | None = None, bias: torch.Tensor | None = None,
                eps: float = 1e-5) -> torch.Tensor:
    dims = tuple(range(-len(tuple(normalized_shape)), 0))
    mean = x.mean(dims, keepdim=True)
    std = (x.var(dims, unbiased=False, keepdim=True) + eps).sqrt().detach()
    y = (x - mean) / std
    if weight is not None:
        y = y * weight
    if bias is not None:
        y = y + bias
    return y


def _softmax_f(x: torch.Tensor, dim: int | None = None, *args: Any, **kwargs: Any) -> torch.Tensor:
    return _ORIG["softmax"](x, dim, *args, **kwargs).detach()


def _softmax_t(x: torch.Tensor, dim: int | None = None, *args: Any, **kwargs: Any) -> torch.Tensor:
    return _ORIG["torch_softmax"](x, dim, *args, **kwargs).detach()


def _softmax_m(self: torch.Tensor, dim: int, *args: Any, **kwargs: Any) -> torch.Tensor:
    return _ORIG["tensor_softmax"](self, dim, *args, **kwargs).detach()


_ORIG: dict[str, Any] = {"softmax": F.softmax, "torch_softmax": torch.softmax, "tensor_softmax": torch.Tensor.softmax,
                         "sdpa": F.scaled_dot_product_attention, "layer_norm": F.layer_norm}


class ConservativePropagation:
    """The PAIR-X composite for transformers: attention weights and LayerNorm scales held constant,
    gradient x input for the rest (Ali et al. 2022). Relevance at a layer is ``activation * gradient``
    and at the input ``image * gradient``; with ReLU MLPs and no biases it sums to the explained cosine."""

    engine = "conservative"

    @contextlib.contextmanager
    def context(self, model: nn.Module) -> Iterator[nn.Module]:
        """``model`` with the functions swapped (see the module docstring), restored on exit."""
        F.softmax, torch.softmax, torch.Tensor.softmax = _softmax_f, _softmax_t, _softmax_m  # type: ignore[assignment]
        F.scaled_dot_product_attention = _sdpa  # type: ignore[assignment]
        F.layer_norm = _layer_norm  # type: ignore[assignment]
        try:
            yield model
        finally:
            F.softmax, torch.softmax, torch.Tensor.softmax = _ORIG["softmax"], _ORIG["torch_softmax"], _ORIG["tensor_softmax"]
            F.scaled_dot_product_attention = _ORIG["sdpa"]
            F.layer_norm = _ORIG["layer_norm"]

    def __repr__(self) -> str:
        return "ConservativePropagation()"
