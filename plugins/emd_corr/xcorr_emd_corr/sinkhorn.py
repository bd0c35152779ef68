"""Batched entropic optimal transport (Sinkhorn) in the log domain.

One function, `sinkhorn_log`, solves G x P problems at once (G groups, e.g. queries;
P problems per group, e.g. candidates) with the iteration of the EMD-Corr authors'
code — r = a / (K c), c = b / (K^T r) from r = c = 1, K = exp(-cost / eps) — but
carried out on log r and log c with log-sum-exp, so small eps neither underflows nor
overflows. Two stopping rules:

* ``"authors"``: stop a group when the mean |r - r_prev| over its problems and rows
  falls below ``tol`` (their default: 0.1, at most 100 iterations);
* ``"marginal"``: stop a group when every problem's row-marginal error
  max_i |sum_j T_ij - a_i| is below ``tol`` (what POT's ``ot.sinkhorn`` checks).

Only torch; runs on the inputs' device. No loop over problems: the Python loop is
over iterations.
"""
from __future__ import annotations

from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict

from xcorr_core.errors import InputError
from xcorr_core.validation import check_tensor

__all__ = ["sinkhorn_log", "SinkhornResult"]

StopRule = Literal["authors", "marginal"]


class SinkhornResult(BaseModel):
    """Plans and diagnostics of a batched Sinkhorn solve.

    Attributes:
        plan: `[G, P, n, m]` transport plans T = diag(r) K diag(c).
        iterations: `[G]` iterations each group ran.
        converged: `[G]` whether the stopping rule was met before ``max_iter``.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)
    plan: torch.Tensor
    iterations: torch.Tensor
    converged: torch.Tensor


def _log(x: torch.Tensor) -> torch.Tensor:
    return torch.log(x.clamp_min(0))  # log 0 = -inf: zero-mass rows/columns get no flow


def sinkhorn_log(a: torch.Tensor, b: torch.Tensor, cost: torch.Tensor, eps: float, *, max_iter: int = 100,
                 tol: float = 0.1, stop: StopRule = "authors") -> SinkhornResult:
    """Entropic OT for a batch of problems.

    Args:
        a: `[G, P, n]` source masses (non-negative).
        b: `[G, P, m]` target masses (non-negative).
        cost: `[G, P, n, m]` costs.
        eps: entropic regularisation (> 0); K = exp(-cost / eps).
        max_iter: iteration cap.
        tol: tolerance of the stopping rule.
        stop: ``"authors"`` or ``"marginal"`` (see the module docstring).
    """
    check_tensor("cost", cost, ndim=4, floating=True, finite=True, non_empty=True)
    G, P, n, m = cost.shape
    check_tensor("a", a, shape=[G, P, n], floating=True, finite=True)
    check_tensor("b", b, shape=[G, P, m], floating=True, finite=True)
    if bool((a < 0).any()) or bool((b < 0).any()):
        raise InputError("transport masses a and b must be non-negative")
    if not eps > 0:
        raise InputError(f"eps must be > 0, got {eps}")
    if max_iter < 1:
        raise InputError(f"max_iter must be >= 1, got {max_iter}")
    if stop not in ("authors", "marginal"):
        raise InputError(f"stop must be 'authors' or 'marginal', got {stop!r}")
    log_k = -cost / eps
    log_a, log_b = _log(a), _log(b)
    log_r = torch.zeros_like(a)
    log_c = torch.zeros_like(b)
    active = torch.ones(G, dtype=torch.bool, device=cost.device)
    iters = torch.zeros(G, dtype=torch.int64, device=cost.device)
    for _ in range(max_iter):
        prev_r = log_r
        new_r = log_a - torch.logsumexp(log_k + log_c[:, :, None, :], dim=3)
        new_c = log_b - torch.logsumexp(log_k + new_r[:, :, :, None], dim=2)
        act = active[:, None, None]
        log_r = torch.where(act, new_r, log_r)
        log_c = torch.where(act, new_c, log_c)
        iters += active.long()
        if stop == "authors":
            diff = (log_r.exp() - prev_r.exp()).abs().nan_to_num(nan=float("inf"))
            err = diff.mean(dim=(1, 2))
        else:
            row = torch.logsumexp(log_k + log_c[:, :, None, :], dim=3) + log_r
            err = (row.exp() - a).abs().amax(dim=(1, 2))
        active = active & ~(err < tol)
        if not bool(active.any()):
            break
    plan = torch.exp(log_r[:, :, :, None] + log_k + log_c[:, :, None, :])
    return SinkhornResult(plan=plan, iterations=iters, converged=~active)
