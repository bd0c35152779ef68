"""What a model expects of its input images (`Preprocess`: size, mean, std) and the forward
pre-hook that makes a model take images in [0, 1] (`add_preprocess`). Used by the named-model
loaders and the shipped models. Depends on torch and pydantic.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import BaseModel
from torch import nn

__all__ = ["Preprocess", "add_preprocess"]


class Preprocess(BaseModel):
    """What a model expects of its inputs: `(H, W)` and per-channel mean / std of images in [0, 1]."""

    size: tuple[int, int] | None
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


def add_preprocess(model: nn.Module, pre: Preprocess, *, resize: bool = True) -> nn.Module:
    """Make ``model`` take images in [0, 1]: a forward pre-hook resizes them to ``pre.size`` (bilinear,
    antialiased; only when they differ and ``resize``) and normalises them. Sets ``model.xcorr_preprocess``."""
    mean = torch.tensor(pre.mean).view(1, 3, 1, 1)
    std = torch.tensor(pre.std).view(1, 3, 1, 1)

    def hook(_m: nn.Module, args: tuple) -> tuple:
        x = args[0]
        if resize and pre.size is not None and tuple(x.shape[-2:]) != tuple(pre.size):
            x = F.interpolate(x, size=pre.size, mode="bilinear", align_corners=False, antialias=True)
        x = (x - mean.to(x.device, x.dtype)) / std.to(x.device, x.dtype)
        return (x, *args[1:])

    model.register_forward_pre_hook(hook)
    model.xcorr_preprocess = pre  # type: ignore[assignment]
    return model
