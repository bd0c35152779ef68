"""Fixed prototypes spread on the unit sphere before training (Mettes et al. 2019), and the
prototype variance of the ProtoKNN paper's appendix. Depends on torch only."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from xcorr_core.validation import check_tensor

__all__ = ["spread_prototypes", "prototype_variance", "max_cosine"]


def max_cosine(p: torch.Tensor) -> torch.Tensor:
    """`[M]` largest cosine of each prototype `[M, D]` with any other prototype."""
    u = F.normalize(p, dim=1)
    cos = u @ u.T
    cos.fill_diagonal_(-2.0)
    return cos.amax(1)


def spread_prototypes(m: int, d: int, *, steps: int = 10_000, lr: float = 0.1, seed: int = 0) -> torch.Tensor:
    """`[M, D]` unit vectors minimising mean_i max_{j != i} cos(p_i, p_j).

    Mettes' procedure: SGD (momentum 0.9, reset every step as in their script, so plain SGD
    steps) with learning rate ``lr`` for ``steps`` steps, renormalising after every step. Seeded.
    """
    if m < 2 or d < 1:
        raise ValueError(f"need at least 2 prototypes of dimension >= 1, got M={m}, D={d}")
    g = torch.Generator().manual_seed(seed)
    p = F.normalize(torch.randn(m, d, generator=g, dtype=torch.float64), dim=1)
    for _ in range(steps):
        p.requires_grad_(True)
        loss = max_cosine(p).mean()
        (grad,) = torch.autograd.grad(loss, p)
        with torch.no_grad():
            p = F.normalize(p - lr * grad, dim=1)
    return p.detach().float()


def prototype_variance(p: torch.Tensor) -> float:
    """1 - |mean_i p_i| of the unit-normalised prototypes `[M, D]` (0: all equal; near 1: spread)."""
    check_tensor("prototypes", p, ndim=2, floating=True, finite=True, non_empty=True)
    return float(1 - F.normalize(p, dim=1).mean(0).norm())
