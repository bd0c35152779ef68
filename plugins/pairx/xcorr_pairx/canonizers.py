"""zennit canonizers for EfficientNets (torchvision's and timm's), the backbone family of the PAIR-X paper.

LRP needs two things an EfficientNet hides in plain tensor arithmetic:

* **squeeze-and-excitation gates** ``x * gate(x)``: the gate is treated as a constant and the
  relevance reaching the product passes to the signal ``x`` unchanged (`SignalGate`), none to the
  gate branch — as the PAIR-X authors' canonizer does;
* **residual additions** ``block(x) + x``: replaced by zennit's ``Sum`` module, so the composite's
  rule for it (EpsilonPlus: ``Norm``) splits the relevance between the two branches in proportion
  to their contributions.

`EfficientNetCanonizer()` is the authors' choice: gates for torchvision's ``SqueezeExcitation``
and timm's ``SqueezeExcite``, the ``Sum`` for torchvision's ``MBConv`` only, BatchNorm layers left
to the composite (EpsilonPlus passes relevance through them). ``residual_all=True`` also sums the
skips of torchvision's ``FusedMBConv`` and timm's ``InvertedResidual`` / ``DepthwiseSeparableConv``
/ ``EdgeResidual`` (which the authors' canonizer leaves as plain additions), and
``merge_batchnorm=True`` adds zennit's ``SequentialMergeBatchNorm``. timm is never imported: its
blocks are recognised by class name and module. Depends on torch, torchvision and zennit.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn
from zennit.canonizers import AttributeCanonizer, CompositeCanonizer, SequentialMergeBatchNorm
from zennit.layer import Sum

__all__ = ["SignalGate", "EfficientNetCanonizer", "is_efficientnet"]

_TIMM_SE = {"SqueezeExcite"}
_TIMM_RESIDUAL = {"InvertedResidual", "DepthwiseSeparableConv", "EdgeResidual"}


def _is_timm(module: nn.Module, names: set[str]) -> bool:
    return type(module).__name__ in names and type(module).__module__.startswith("timm")


def _tv_classes() -> tuple[type, type, type]:
    from torchvision.models.efficientnet import FusedMBConv, MBConv
    from torchvision.ops.misc import SqueezeExcitation

    return MBConv, FusedMBConv, SqueezeExcitation


class SignalGate(torch.autograd.Function):
    """``gate * x`` whose backward sends the incoming relevance to ``x`` unchanged and nothing to the gate."""

    @staticmethod
    def forward(ctx: Any, gate: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return gate * x

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # zeros, not None: zennit's hooks in the gate branch expect a tensor (it carries no relevance)
        return torch.zeros_like(grad), grad


class _GateCanonizer(AttributeCanonizer):
    """Squeeze-and-excitation modules: the gate through `SignalGate`."""

    def __init__(self) -> None:
        super().__init__(self._attribute_map)

    @classmethod
    def _attribute_map(cls, name: str, module: nn.Module) -> dict[str, Any] | None:
        _, _, tv_se = _tv_classes()
        if isinstance(module, tv_se):
            return {"forward": cls._tv_forward.__get__(module)}
        if _is_timm(module, _TIMM_SE):
            return {"forward": cls._timm_forward.__get__(module)}
        return None

    @staticmethod
    def _tv_forward(self: Any, x: torch.Tensor) -> torch.Tensor:
        return SignalGate.apply(self._scale(x), x)

    @staticmethod
    def _timm_forward(self: Any, x: torch.Tensor) -> torch.Tensor:
        s = self.conv_reduce(x.mean((2, 3), keepdim=True))
        s = self.act1(self.bn(s) if hasattr(self, "bn") else s)
        return SignalGate.apply(self.gate(self.conv_expand(s)), x)


class _ResidualCanonizer(AttributeCanonizer):
    """Blocks with a skip connection: ``body(x)`` and ``x`` added by a ``Sum`` module.

    The block's own forward runs with its skip switched off (torchvision ``use_res_connect``,
    timm ``has_skip``), so the body is exactly the block's, whatever its layout."""

    def __init__(self, residual_all: bool) -> None:
        self.residual_all = residual_all
        super().__init__(self._attribute_map)

    def copy(self) -> "_ResidualCanonizer":
        return type(self)(self.residual_all)

    def _attribute_map(self, name: str, module: nn.Module) -> dict[str, Any] | None:
        mbconv, fused, _ = _tv_classes()
        if isinstance(module, mbconv) or (self.residual_all and isinstance(module, fused)):
            flag = "use_res_connect"
        elif self.residual_all and _is_timm(module, _TIMM_RESIDUAL):
            flag = "has_skip"
        else:
            return None
        if not getattr(module, flag, False):
            return None
        return {"forward": self._summed_forward.__get__(module), "canonizer_sum": Sum(), "canonizer_skip_flag": flag}

    @staticmethod
    def _summed_forward(self: Any, x: torch.Tensor) -> torch.Tensor:
        flag = self.canonizer_skip_flag
        setattr(self, flag, False)
        try:
            body = type(self).forward(self, x)  # the block without its skip (stochastic depth / drop path: eval no-ops)
        finally:
            setattr(self, flag, True)
        return self.canonizer_sum(torch.stack([x, body], dim=-1))


class EfficientNetCanonizer(CompositeCanonizer):
    """The canonizer for torchvision and timm EfficientNets (see the module docstring); the defaults are
    the PAIR-X authors' canonizer."""

    def __init__(self, *, residual_all: bool = False, merge_batchnorm: bool = False) -> None:
        parts: list[Any] = [_GateCanonizer(), _ResidualCanonizer(residual_all)]
        if merge_batchnorm:
            parts.append(SequentialMergeBatchNorm())
        super().__init__(tuple(parts))


def is_efficientnet(model: nn.Module) -> bool:
    """Whether ``model`` holds EfficientNet blocks (torchvision ``MBConv`` / ``FusedMBConv`` /
    ``SqueezeExcitation`` or timm's squeeze-excite and residual blocks)."""
    mbconv, fused, tv_se = _tv_classes()
    return any(isinstance(m, (mbconv, fused, tv_se)) or _is_timm(m, _TIMM_SE | _TIMM_RESIDUAL) for m in model.modules())
