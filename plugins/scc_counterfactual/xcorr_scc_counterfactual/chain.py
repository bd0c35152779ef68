"""The module chain `split.split_model` builds for a classifier's tail g, and how to list the
steps of a chain or an ``nn.Sequential``; read by `split` and by `local` (which recognises
residual tails). Depends on torch only.
"""
from __future__ import annotations

import torch
from torch import nn

__all__: list[str] = []


class _Chain(nn.Module):
    """Apply modules in order, flattening before the first ``nn.Linear`` (as torchvision's forwards do)."""

    def __init__(self, modules: list[nn.Module]) -> None:
        super().__init__()
        self.parts = nn.ModuleList(modules)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for m in self.parts:
            if isinstance(m, nn.Linear) and x.ndim > 2:
                x = torch.flatten(x, 1)
            x = m(x)
        return x


def _modules_of(g: nn.Module) -> list[nn.Module] | None:
    """The steps of a chain this file built or of an ``nn.Sequential``; None for any other module."""
    return list(g.parts) if isinstance(g, _Chain) else list(g) if isinstance(g, nn.Sequential) else None
