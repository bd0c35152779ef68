"""EMD-Corr scoring: patch weights, patch similarities, Sinkhorn flows, top-L score.

Follows the authors' code (see the project's IMPLEMENTATION-NOTES, "EMD-Corr"):

* weights from the raw (un-normalised) features: query patch m gets
  ``q_m . mean(g) / (||mean q|| ||mean g|| HW)``, candidate patch s gets
  ``g_s . mean(q) / (same)``; each vector divided by ``sum + 1e-5``. Optionally
  negatives are clamped to 0 first (the DeepFace-EMD variant).
* similarity: cosine of per-patch L2-normalised features; cost = 1 - similarity.
* flows: Sinkhorn with eps = 0.05 (`sinkhorn.sinkhorn`).
* score: over the L = 5 largest flows T_ij, sum of T_ij * sim_ij (a similarity).

Everything is batched over G queries x P candidates; the feature stage is chunked
over problems to bound memory. Depends on torch and xcorr_core only.
"""
from __future__ import annotations

import torch
from pydantic import BaseModel, ConfigDict

from xcorr_core.cells import CellMaps
from xcorr_core.errors import InputError
from xcorr_core.validation import check_same_device, check_tensor

from typing import Literal

from .sinkhorn import SinkhornResult, StopRule, sinkhorn

__all__ = ["patch_weights", "patch_similarity", "emd_corr_scores", "emd_corr_scores_cells", "EMDCorrOutput"]


def _denominator(query: torch.Tensor, mean_g: torch.Tensor) -> torch.Tensor:
    """``||mean q|| ||mean g|| HW`` per problem, `[G, P, 1]`."""
    mq = query.mean(-1)
    return (mq.norm(dim=-1)[:, None] * mean_g.norm(dim=-1) * query.shape[-1]).clamp_min(1e-12)[..., None]


NEGATIVE_HINT = ("negative patch weights: the features take negative values (GELU / LayerNorm / SiLU outputs, e.g. a ViT's or "
                 "an EfficientNet's), which the authors' unclamped weights cannot transport; set clamp_negative_weights: true "
                 "(or 'auto', the default) to clamp them to 0 as DeepFace-EMD does")


def _check_masses(a: torch.Tensor, b: torch.Tensor) -> None:
    """Unclamped masses that went negative: an error that names the option (Sinkhorn would only say 'non-negative')."""
    if bool((a < 0).any()) or bool((b < 0).any()):
        raise InputError(NEGATIVE_HINT)


def _normalise_masses(w: torch.Tensor, clamp_negative: bool, weight_eps: float) -> torch.Tensor:
    if clamp_negative:
        w = w.clamp_min(0)
    s = w.sum(-1, keepdim=True)
    return torch.where(s > 0, w / (s + weight_eps), torch.full_like(w, 1.0 / w.shape[-1]))


def patch_weights(query: torch.Tensor, cands: torch.Tensor, *, clamp_negative: bool = False,
                  weight_eps: float = 1e-5) -> tuple[torch.Tensor, torch.Tensor]:
    """Masses of the query's and the candidates' patches (the authors' cross-correlation weights).

    Args:
        query: `[G, C, HWq]` raw query features.
        cands: `[G, P, C, HWc]` raw candidate features.

    Returns:
        ``(a [G, P, HWq], b [G, P, HWc])``. A degenerate problem whose weights sum to
        <= 0 (e.g. an all-zero map) gets uniform weights instead of a division by ~0.
    """
    raw, _, mean_g = _pass_over_candidates(query, cands, chunk=256)
    return _weights_from_raw(query, raw, mean_g, clamp_negative, weight_eps)


def _weights_from_raw(query: torch.Tensor, raw: torch.Tensor, mean_g: torch.Tensor, clamp_negative: bool,
                      weight_eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    # q_m . mean(g) = mean_s(q_m . g_s) and g_s . mean(q) = mean_m(q_m . g_s): no second pass over the candidates
    denom = _denominator(query, mean_g)
    a = raw.mean(-1) / denom
    b = raw.mean(-2) / denom
    return _normalise_masses(a, clamp_negative, weight_eps), _normalise_masses(b, clamp_negative, weight_eps)


def _pass_over_candidates(query: torch.Tensor, cands: torch.Tensor, chunk: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One chunked pass over the candidates: raw products ``q_m . g_s`` `[G, P, HWq, HWc]`,
    candidate patch norms `[G, P, HWc]` and candidate mean features `[G, P, C]`.

    Chunks hold about ``chunk`` problems (whole groups when P is small, slices of a group
    when P is large), so the temporaries (the squared copy for the norms) stay at about
    ``chunk x C x HW`` floats whatever G and P are.
    """
    G, P, C, hw = cands.shape
    qt = query.transpose(1, 2)[:, None]  # [G, 1, HWq, C], broadcast over candidates (no copies)
    gstep, pstep = max(1, chunk // P), min(P, chunk)
    raws, norms, means = [], [], []
    for g0 in range(0, G, gstep):
        r_row, n_row, m_row = [], [], []
        for p0 in range(0, P, pstep):
            part = cands[g0:g0 + gstep, p0:p0 + pstep]  # [g, p, C, HW]
            r_row.append(qt[g0:g0 + gstep] @ part)
            # square-then-sum is ~6x faster than .norm() over the strided channel dim on CPU
            n_row.append(part.square().sum(2).sqrt())
            m_row.append(part.mean(-1))
        raws.append(torch.cat(r_row, 1))
        norms.append(torch.cat(n_row, 1))
        means.append(torch.cat(m_row, 1))
    return torch.cat(raws), torch.cat(norms), torch.cat(means)


def patch_similarity(query: torch.Tensor, cands: torch.Tensor, chunk: int = 256) -> torch.Tensor:
    """Cosine similarity of every query patch with every candidate patch, `[G, P, HWq, HWc]`.

    Computed as raw dot products divided by the patch norms (no normalised copy of the
    candidates is made); a zero patch has similarity 0, as with ``F.normalize``.
    """
    raw, ng, _ = _pass_over_candidates(query, cands, chunk)
    return _similarity_from_raw(query, raw, ng)


def _similarity_from_raw(query: torch.Tensor, raw: torch.Tensor, ng: torch.Tensor) -> torch.Tensor:
    nq = query.square().sum(1).sqrt().clamp_min(1e-12)  # [G, HWq]
    return raw / (nq[:, None, :, None] * ng.clamp_min(1e-12)[:, :, None, :])


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
                    tol: float | None = None, stop: StopRule = "authors", clamp_negative: bool = False, weight_eps: float = 1e-5,
                    chunk: int = 256, solver: Literal["auto", "scaling", "log"] = "auto") -> EMDCorrOutput:
    """EMD-Corr scores of candidates against queries.

    Args:
        query: `[C, H, W]` or `[G, C, H, W]` feature maps (raw, e.g. post-ReLU layer4).
        cands: `[N, C, H, W]` (with a 3-D query) or `[G, N, C, H, W]`.
        eps: entropic regularisation of the Sinkhorn solve.
        max_iter: Sinkhorn iteration cap.
        tol: tolerance of the stopping rule (None: the rule's default, `sinkhorn.DEFAULT_TOL`).
        stop: ``"authors"`` or ``"marginal"`` (see `sinkhorn.sinkhorn_log`).
        solver: ``"scaling"``, ``"log"`` or ``"auto"`` (scaling unless K would underflow).
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
    raw, ng, mean_g = _pass_over_candidates(q, g, chunk)
    a, b = _weights_from_raw(q, raw, mean_g, clamp_negative, weight_eps)
    if not clamp_negative:
        _check_masses(a, b)
    sim = _similarity_from_raw(q, raw, ng)
    return _flows_and_scores(a, b, sim, eps=eps, L=L, max_iter=max_iter, tol=tol, stop=stop, solver=solver)


def _flows_and_scores(a: torch.Tensor, b: torch.Tensor, sim: torch.Tensor, *, eps: float, L: int, max_iter: int, tol: float | None,
                      stop: StopRule, solver: Literal["auto", "scaling", "log"]) -> EMDCorrOutput:
    """Sinkhorn flows between masses ``a`` `[G, P, HWq]` and ``b`` `[G, P, HWc]` at cost ``1 - sim``, and the top-L score."""
    for name, t in (("query", a), ("candidates", b), ("query/candidates", sim)):
        if not bool(torch.isfinite(t).all()):
            raise InputError(f"{name} features contain NaN/inf")
    hwc = sim.shape[-1]
    sol = sinkhorn(a, b, 1.0 - sim, eps, max_iter=max_iter, tol=tol, stop=stop, method=solver)
    flows, idx = sol.plan.flatten(2).topk(L, dim=-1)  # [G, P, L]
    sims = sim.flatten(2).gather(-1, idx)
    out_pairs = torch.stack([idx // hwc, idx % hwc], dim=-1)
    return EMDCorrOutput(scores=(flows * sims).sum(-1), pairs=out_pairs, flows=flows, similarities=sims, solver=sol)


def emd_corr_scores_cells(query: torch.Tensor, cells: CellMaps, *, eps: float = 0.05, pairs: int = 5, max_iter: int = 100,
                          tol: float | None = None, stop: StopRule = "authors", clamp_negative: bool = False, weight_eps: float = 1e-5,
                          solver: Literal["auto", "scaling", "log"] = "auto") -> EMDCorrOutput:
    """`emd_corr_scores` with candidates given as `CellMaps` (unit `[G, P, HWc, C]`, norms, means), as a
    store in the ``cells`` layout keeps them.

    One batched product of the candidates' unit cells with the query's unit cells and its mean vector
    `[C, HWq + 1]` gives every cosine and, times the cell norms, every candidate weight numerator
    ``g_s . mean(q)``; the query weight numerators ``q_m . mean(g)`` come from the stored means. No
    transpose or normalisation of the candidates; equal to `emd_corr_scores` up to float rounding.
    """
    if query.ndim != 4:
        raise InputError(f"query must be [G, C, H, W], got {list(query.shape)}")
    check_tensor("query", query, ndim=4, floating=True, non_empty=True)
    unit, norms, mean_g = cells.unit, cells.norms, cells.mean
    if unit.ndim != 4 or unit.shape[0] != query.shape[0] or unit.shape[-1] != query.shape[1]:
        raise InputError(f"queries {list(query.shape)} need cells with unit [G, P, HW, C], got {list(unit.shape)}")
    check_same_device(query=query, candidates=unit)
    q = query.flatten(2)  # [G, C, HWq]
    hwq, hwc = q.shape[-1], unit.shape[-2]
    L = min(pairs, hwq * hwc)
    if L < 1:
        raise InputError(f"pairs must be >= 1, got {pairs}")
    nq = q.square().sum(1).sqrt().clamp_min(1e-12)  # [G, HWq]
    mq = q.mean(-1)  # [G, C]
    rhs = torch.cat([q / nq[:, None], mq[:, :, None]], dim=2)  # [G, C, HWq + 1]
    prod = unit @ rhs[:, None]  # [G, P, HWc, HWq + 1]
    sim = prod[..., :hwq].transpose(-1, -2)  # [G, P, HWq, HWc]
    denom = (mq.norm(dim=-1)[:, None] * mean_g.norm(dim=-1) * hwq).clamp_min(1e-12)[..., None]  # [G, P, 1]
    a = (mean_g @ q) / denom  # q_m . mean(g): [G, P, HWq]
    b = prod[..., hwq] * norms / denom  # g_s . mean(q) = |g_s| (u_s . mean(q)): [G, P, HWc]
    a, b = _normalise_masses(a, clamp_negative, weight_eps), _normalise_masses(b, clamp_negative, weight_eps)
    if not clamp_negative:
        _check_masses(a, b)
    return _flows_and_scores(a, b, sim, eps=eps, L=L, max_iter=max_iter, tol=tol, stop=stop, solver=solver)
