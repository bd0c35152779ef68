"""Argument checks shared by every component: shape, dtype, device, finiteness.

Only depends on torch and `xcorr_core.errors`. Each check raises `InputError`
with a message that names the argument, so bad input never yields a wrong answer.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from .errors import InputError

__all__ = ["check_tensor", "check_same_device", "check_finite", "check_images"]


def check_tensor(
    name: str,
    value: object,
    *,
    ndim: int | None = None,
    shape: Sequence[int | None] | None = None,
    floating: bool | None = None,
    dtype: torch.dtype | None = None,
    finite: bool = False,
    non_empty: bool = False,
) -> torch.Tensor:
    """Validate `value` as a tensor and return it.

    Args:
        name: argument name used in error messages.
        value: the object to check.
        ndim: required number of dimensions.
        shape: required shape; `None` entries match any size.
        floating: require a floating (True) or integer (False) dtype.
        dtype: require exactly this dtype.
        finite: reject NaN and inf.
        non_empty: reject tensors with zero elements.
    """
    if not isinstance(value, torch.Tensor):
        raise InputError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if ndim is not None and value.ndim != ndim:
        raise InputError(f"{name} must have {ndim} dimensions, got shape {tuple(value.shape)}")
    if shape is not None:
        if value.ndim != len(shape) or any(s is not None and s != v for s, v in zip(shape, value.shape)):
            want = "[" + ", ".join("*" if s is None else str(s) for s in shape) + "]"
            raise InputError(f"{name} must have shape {want}, got {list(value.shape)}")
    if dtype is not None and value.dtype != dtype:
        raise InputError(f"{name} must have dtype {dtype}, got {value.dtype}")
    if floating is True and not value.is_floating_point():
        raise InputError(f"{name} must be a floating-point tensor, got {value.dtype}")
    if floating is False and (value.is_floating_point() or value.is_complex()):
        raise InputError(f"{name} must be an integer tensor, got {value.dtype}")
    if non_empty and value.numel() == 0:
        raise InputError(f"{name} is empty (shape {list(value.shape)})")
    if finite:
        check_finite(name, value)
    return value


def check_finite(name: str, value: torch.Tensor) -> None:
    """Raise `InputError` if a floating tensor holds NaN or inf.

    First one sum (any NaN or inf makes it NaN or inf; ~30x cheaper than an elementwise test on
    CPU); only when it is not finite — bad values, or finite ones whose sum overflows — each
    element is tested.
    """
    if not value.is_floating_point() or value.numel() == 0 or math.isfinite(float(value.detach().sum())):
        return
    n_bad = int((~torch.isfinite(value)).sum())
    if n_bad:
        raise InputError(f"{name} contains {n_bad} NaN/inf value(s)")


def check_same_device(**tensors: torch.Tensor) -> torch.device:
    """Require every tensor on one device; return it."""
    devices = {n: t.device for n, t in tensors.items()}
    if len(set(devices.values())) > 1:
        desc = ", ".join(f"{n} on {d}" for n, d in devices.items())
        raise InputError(f"tensors must be on the same device: {desc}")
    return next(iter(devices.values()))


def check_images(images: object, *, unit_range: bool = False, name: str = "images") -> torch.Tensor:
    """A batch of RGB images `[B, 3, H, W]`, floating; anything else gets an error that says how to fix it.

    Channels-last, 1- and 4-channel and uint8 batches are rejected (with the conversion to use);
    ``unit_range`` also rejects values outside [0, 1] (e.g. 0-255 floats) for models that expect
    [0, 1] input, such as the shipped SmallResNets.
    """
    x = check_tensor(name, images, ndim=4, non_empty=True)
    if x.dtype == torch.uint8:
        raise InputError(f"{name} are uint8: convert to float in [0, 1] with {name}.float() / 255")
    if not x.is_floating_point():
        raise InputError(f"{name} must be a floating-point tensor, got {x.dtype}")
    c, w = x.shape[1], x.shape[3]
    if c not in (1, 3, 4) and w in (1, 3, 4):
        raise InputError(f"{name} look channels-last {list(x.shape)} ([B, H, W, C]); use {name}.permute(0, 3, 1, 2)")
    if c == 1:
        raise InputError(f"{name} have 1 channel; repeat it to RGB with {name}.expand(-1, 3, -1, -1)")
    if c == 4:
        raise InputError(f"{name} have 4 channels (RGBA?); drop the alpha channel with {name}[:, :3]")
    if c != 3:
        raise InputError(f"{name} must have 3 (RGB) channels, got shape {list(x.shape)}")
    if unit_range and x.device.type != "meta":
        lo, hi = float(x.min()), float(x.max())
        if lo < -1e-3 or hi > 1.0 + 1e-3:
            hint = " (0-255 values? divide by 255)" if hi > 2.0 else ""
            raise InputError(f"{name} must lie in [0, 1] for this model, got values in [{lo:.3g}, {hi:.3g}]{hint}")
    return x
