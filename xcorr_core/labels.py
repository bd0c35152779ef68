"""The length and labels of what a pipeline is given: a Dataset of ``(image, label)`` items (with a
``labels`` attribute or not) or a bare image tensor `[N, 3, H, W]`, checked with messages that
say what to pass instead. Depends on torch and the core's errors.
"""
from __future__ import annotations

from typing import Any

import torch

from .errors import InputError

__all__: list[str] = []


def _length(data: Any, name: str) -> int:
    """``len(data)`` of a Dataset or an image tensor `[N, 3, H, W]`; `InputError` for anything else."""
    if isinstance(data, torch.Tensor) and data.ndim != 4:
        raise InputError(f"{name}: an image tensor must be [N, 3, H, W], got shape {list(data.shape)}")
    try:
        return len(data)
    except TypeError as exc:
        raise InputError(f"{name} must be a Dataset with a length (or an image tensor), got {type(data).__name__}") from exc


def _labels_of(data: Any, given: torch.Tensor | None, what: str) -> torch.Tensor:
    """Long `[len(data)]` labels: ``given``, else ``data.labels``, else the second item of each sample."""
    if given is None:
        given = getattr(data, "labels", None)
        if given is None:
            if isinstance(data, torch.Tensor):
                raise InputError(f"data is a bare image tensor {list(data.shape)} with no labels: pass {what}= (long [N]) "
                                 "or a Dataset of (image, label)")
            try:
                given = torch.tensor([int(data[i][1]) for i in range(len(data))])
            except (TypeError, IndexError, ValueError) as exc:
                raise InputError(f"cannot read labels from the data's items ({type(exc).__name__}: {exc}); pass {what}=") from exc
    given = torch.as_tensor(given)
    if given.is_floating_point() or given.is_complex() or given.dtype == torch.bool:
        if given.dtype == torch.bool or not bool((given == given.round()).all()):
            raise InputError(f"{what} must be integer class ids, got {given.dtype} values")
    out = given.to(torch.int64)
    if out.shape != (len(data),):
        raise InputError(f"{what} must be [{len(data)}], got {list(out.shape)}")
    return out
