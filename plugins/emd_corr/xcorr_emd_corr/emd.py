"""EMD-Corr scoring: patch weights, patch similarities, Sinkhorn flows, top-L score.

Follows the authors' code (see the project's IMPLEMENTATION-NOTES, "EMD-Corr"):

* weights from the raw (un-normalised) features: query patch m gets
  ``q_m . mean(g) / (||mean q|| ||mean g|| HW)``, candidate patch s gets
  ``g_s . mean(q) / (same)``; each vector divided by ``sum + 1e-5``. Optionally
  negatives are clamped to 0 first (the DeepFace-EMD variant).
* similarity: cosine of per-patch L2-normalised features; cost = 1 - similarity.
* flows: Sinkhorn with eps = 0.05 (`sinkhorn.sinkhorn_log`).
* score: over the L = 5 largest flows T_ij, sum of T_ij * sim_ij (a similarity).

Everything is batched over G queries x P candidates; the feature stage is chunked
over problems to bound memory. Depends on torch and xcorr_core only.
"""
from __future__ import annotations

import torch
from pydantic import BaseModel, ConfigDict

from xcorr_core.errors import InputError
from xcorr_core.validation import check_same_device, check_tensor

from .sinkhorn import SinkhornResult, StopRule, sinkhorn_log

__all__ = ["patch_weights", "patch_similarity", "raw_products", "emd_corr_scores", "EMDCorrOutput"]


def patch_weights(query: torch.Tensor, cands: torch.Tensor, *, clamp_negative: bool = False,
                  weight_eps: float = 1e-5, raw: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Masses of the query's and the candidates' patches (the authors' cross-correlation weights).

    Args:
        query: `[G, C, HWq]` raw query features.
        cands: `[G, P, C, HWc]` raw candidate features.
        raw: optional `[G, P, HWq, HWc]` raw dot products ``q_m . g_s`` (reused, not recomputed:
            ``q_m . mean(g) = mean_s(q_m . g_s)``).

    Returns:
        ``(a [G, P, HWq], b [G, P, HWc])``. A degenerate problem whose weights sum to
        <= 0 (e.g. an all-zero map) gets uniform weights instead of a division by ~0.
    """
    hwq, hwc = query.shape[-1], cands.shape[-1]
    if raw is None:
        raw = query.transpose(1, 2)[:, None] @ cands
    mq, mg = query.mean(-1), cands.mean(-1)  # [G, C], [G, P, C]
    denom = (mq.norm(dim=-1)[:, None] * mg.norm(dim=-1) * hwq).clamp_min(1e-12)[..., None]  # [G, P, 1]
    a = raw.mean(-1) / denom  # q_m . mean(g)
    b = raw.mean(-2) / denom  # g_s . mean(q)
    out = []
    for w, hw in ((a, hwq), (b, hwc)):
        if clamp_negative:
            w = w.clamp_min(0)
        s = w.sum(-1, keepdim=True)
        w = torch.where(s > 0, w / (s + weight_eps), torch.full_like(w, 1.0 / hw))
        out.append(w)
    return out[0], out[1]


def raw_products(query: torch.Tensor, cands: torch.Tensor, chunk: int = 256) -> torch.Tensor:
    """``q_m . g_s`` for every query patch m and candidate patch s: `[G, P, HWq, HWc]` (chunked over P)."""
    qt = query.transpose(1, 2)[:, None]  # [G, 1, HWq, C]
    return torch.cat([qt @ cands[:, s:s + chunk] for s in range(0, cands.shape[1], chunk)], dim=1)


def patch_similarity(query: torch.Tensor, cands: torch.Tensor, chunk: int = 256, raw: torch.Tensor | None = None) -> torch.Tensor:
    """Cosine similarity of every query patch with every candidate patch, `[G, P, HWq, HWc]`.

    Computed as raw dot products divided by the patch norms (no normalised copy of the
    candidates is made); a zero patch has similarity 0, as with ``F.normalize``.
    """
    if raw is None:
        raw = raw_products(query, cands, chunk)
    # square-then-sum is ~6x faster than .norm() over the strided channel dim on CPU
    nq = query.square().sum(1).sqrt().clamp_min(1e-12)  # [G, HWq]
    ng = cands.square().sum(2).sqrt().clamp_min(1e-12)  # [G, P, HWc]
    return raw / (nq[:, None, :, None] * ng[:, :, None, :])


class EMDCorrOutput(BaseModel):
    """Scores and the pairs behind them for G queries x P candidates.

    Attributes:
        scores: `[G, P]` EMD-Corr similarity (higher = more similar).
        pairs: long `[G, P, L, 2]` (query patch, candidate patch), row-major indices.
        flows: `[G, P, L]` flow of each pair.
        similarities: `[G, P, L]` cosine of each pair.
        solver: the Sinkhorn result (plans, iterations).
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)
    scores: torch.Tensor
    pairs: torch.Tensor
    flows: torch.Tensor
    similarities: torch.Tensor
    solver: SinkhornResult


def emd_corr_scores(query: torch.Tensor, cands: torch.Tensor, *, eps: float = 0.05, pairs: int = 5, max_iter: int = 100,
                    tol: float = 0.1, stop: StopRule = "authors", clamp_negative: bool = False, weight_eps: float = 1e-5,
                    chunk: int = 256) -> EMDCorrOutput:
    """EMD-Corr scores of candidates against queries.

    Args:
        query: `[C, H, W]` or `[G, C, H, W]` feature maps (raw, e.g. post-ReLU layer4).
        cands: `[N, C, H, W]` (with a 3-D query) or `[G, N, C, H, W]`.
        eps, max_iter, tol, stop: Sinkhorn settings (`sinkhorn_log`).
        pairs: L, the number of largest flows that make the score.
        clamp_negative: clamp negative patch weights to 0 before normalising.
        weight_eps: the ``+ 1e-5`` in the weight normalisation.
        chunk: candidates per chunk in the similarity stage.

    Returns:
        `EMDCorrOutput` with a leading G dimension (G = 1 for a 3-D query).
    """
    # NaN/inf are checked on the small derived tensors below (they propagate there), not on
    # the inputs: a pass over [N, 2048, 49] costs as much as the whole re-ranking.
    single = query.ndim == 3
    if single:
        check_tensor("query", query, ndim=3, floating=True, non_empty=True)
        check_tensor("candidates", cands, ndim=4, floating=True, non_empty=True)
        query, cands = query[None], cands[None]
    else:
        check_tensor("query", query, ndim=4, floating=True, non_empty=True)
        check_tensor("candidates", cands, ndim=5, floating=True, non_empty=True)
        if cands.shape[0] != query.shape[0]:
            raise InputError(f"queries [G={query.shape[0]}, ...] need candidates [G, N, C, H, W], got {list(cands.shape)}")
    check_same_device(query=query, candidates=cands)
    if cands.shape[2] != query.shape[1]:
        raise InputError(f"query has {query.shape[1]} channels but candidates have {cands.shape[2]}")
    G, P = cands.shape[:2]
    q = query.flatten(2)  # [G, C, HWq]
    g = cands.flatten(3)  # [G, P, C, HWc]
    hwq, hwc = q.shape[-1], g.shape[-1]
    L = min(pairs, hwq * hwc)
    if L < 1:
        raise InputError(f"pairs must be >= 1, got {pairs}")
    raw = raw_products(q, g, chunk)
    a, b = patch_weights(q, g, clamp_negative=clamp_negative, weight_eps=weight_eps, raw=raw)
    sim = patch_similarity(q, g, raw=raw)
    for name, t in (("query", a), ("candidates", b), ("query/candidates", sim)):
        if not bool(torch.isfinite(t).all()):
            raise InputError(f"{name} features contain NaN/inf")
    sol = sinkhorn_log(a, b, 1.0 - sim, eps, max_iter=max_iter, tol=tol, stop=stop)
    flows, idx = sol.plan.flatten(2).topk(L, dim=-1)  # [G, P, L]
    sims = sim.flatten(2).gather(-1, idx)
    out_pairs = torch.stack([idx // hwc, idx % hwc], dim=-1)
    return EMDCorrOutput(scores=(flows * sims).sum(-1), pairs=out_pairs, flows=flows, similarities=sims, solver=sol)
