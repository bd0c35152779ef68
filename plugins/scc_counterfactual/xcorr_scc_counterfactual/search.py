"""The greedy cell-replacement search (Goyal et al. 2019 + the semantic consistency term of Vandenhende et al. 2022).

A candidate is a pair (query cell i, distractor cell j) over all ``n`` distractors' ``h*w`` cells.
Each step scores every remaining candidate by

    log g_{c'}(f(I) with cell i replaced by cell j)  +  lambda * log L_s(i, j)

where L_s is the softmax over *all* distractor cells j' of ``cos(u(I)_i, u(I')_j') / tau`` (the
auxiliary features are L2-normalised, as in the non-parametric softmax the paper takes from SwAV /
DeepCluster). The pre-filter keeps the global top fraction of candidates by L_s once, before the
first step. After an edit, every candidate that reuses its query cell or its distractor cell is
dropped. The search stops when g predicts c' (success) or at ``max_edits`` / when no candidate is
left (failure, reported, never raised).

Scoring is batched over candidates in chunks. Four exact paths:

- closed form, when g is global average pooling + linear (``W``, ``b``): replacing cell i by cell j
  changes the logits by ``W (d_j - q_i) / hw``, so all candidates of a step cost one gather and a
  log-sum-exp over the precomputed ``D W^T / hw`` and ``Q W^T / hw``;
- first linear, when g starts with a linear layer on the flattened map (VGG's classifier): the first
  layer's output changes by ``W1_i (d_j - q_i)`` (``W1_i`` = the block of W1 that reads cell i), so
  only ``d`` of its ``d*h*w`` inputs are multiplied per candidate (candidates are kept sorted by
  query cell: one matrix product per query cell and chunk); the rest of g runs on the result;
- local, when g is stride-1 residual blocks + pooling + linear (the paper's ResNet-50 g =
  ``layer4[1:]`` + pool + fc): each candidate evaluated on the window its edit can reach
  (`local`);
- generic, any g: candidate feature maps built with one indexed write per chunk and run through g.

Chunks are sized from a memory budget (``memory_mb``) unless ``chunk`` is given.
"""
from __future__ import annotations

import math
import time
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel, Field
from torch import nn

from xcorr_core.errors import InputError
from xcorr_core.validation import check_same_device, check_tensor

from .local import LocalTail, _Local, local_tail_of
from .scorers import _ClosedForm, _FirstLinear, _Generic
from .split import in_training

__all__ = ["Edit", "SearchResult", "semantic_cosine", "semantic_log_likelihood", "prefilter_candidates", "search_counterfactual",
           "apply_edits"]


class Edit(BaseModel):
    """One cell replacement: query cell ``query_cell`` <- cell ``distractor_cell`` of distractor ``distractor``."""

    query_cell: int
    distractor: int
    distractor_cell: int
    score: float = Field(description="total objective of the chosen candidate")
    log_prob_target: float = Field(description="log g_c'(edited) right after this edit")
    log_semantic: float | None = Field(None, description="log L_s of the pair (None without the semantic term)")


class SearchResult(BaseModel):
    """What the greedy search found, in cells of the `(h, w)` grid (row-major ``r * w + c``)."""

    target_class: int
    query_class: int
    edits: list[Edit]
    success: bool
    reason: str = Field(description="'flipped', 'max_edits' or 'no_candidates'")
    grid: tuple[int, int]
    n_distractors: int
    candidates: int = Field(description="candidates after the pre-filter")
    path: Literal["closed_form", "first_linear", "local", "generic"]
    chunk: int = Field(0, description="candidates scored per batch")
    seconds: float
    prob_target: list[float] = Field(description="g_c' before the first edit and after each edit")


def semantic_cosine(aux_query: torch.Tensor, aux_distractors: torch.Tensor) -> torch.Tensor:
    """``cos(u_i, u_j)`` `[hw, n*hw]` of every query cell with every distractor cell.

    Args:
        aux_query: `[d', h, w]` auxiliary features of the query.
        aux_distractors: `[n, d', h, w]` of the distractors, on the same grid.
    """
    uq = F.normalize(aux_query.flatten(1).T.float(), dim=1)
    ud = F.normalize(aux_distractors.permute(0, 2, 3, 1).reshape(-1, aux_distractors.shape[1]).float(), dim=1)
    return uq @ ud.T


def semantic_log_likelihood(aux_query: torch.Tensor, aux_distractors: torch.Tensor, temperature: float) -> torch.Tensor:
    """log L_s `[hw, n*hw]`: for each query cell, log-softmax over all distractor cells of
    ``cos(u_i, u_j) / temperature`` (arguments as `semantic_cosine`)."""
    return torch.log_softmax(semantic_cosine(aux_query, aux_distractors) / temperature, dim=1)


def prefilter_candidates(key: torch.Tensor, fraction: float, rounding: Literal["floor", "ceil"] = "floor") -> torch.Tensor:
    """Flat indices ``i * N + j`` of the pre-filter's candidates, sorted: the global top ``fraction`` of
    ``key`` `[hw, N]` over all pairs. ``rounding``: how many are kept of ``fraction * hw * N`` —
    ``"floor"`` as the authors' ``int(...)``, ``"ceil"``; at least one."""
    total = key.numel()
    want = fraction * total
    keep = max(1, math.floor(want) if rounding == "floor" else math.ceil(want))
    return torch.topk(key.flatten(), min(keep, total), sorted=False).indices.sort().values


def _check_inputs(query: torch.Tensor, distractors: torch.Tensor) -> None:
    check_tensor("query features", query, ndim=3, floating=True, non_empty=True, finite=True)
    if distractors.ndim != 4 or distractors.shape[0] == 0:
        raise InputError(f"distractor features must be [n >= 1, d, h, w], got {tuple(distractors.shape)}")
    check_tensor("distractor features", distractors, ndim=4, floating=True, non_empty=True, finite=True)
    check_same_device(query=query, distractors=distractors)
    if distractors.shape[1:] != query.shape:
        raise InputError(f"query features {tuple(query.shape)} and distractor features {tuple(distractors.shape[1:])} "
                         "differ: all images must give the same [d, h, w] grid")


@torch.no_grad()
def search_counterfactual(
    query: torch.Tensor,
    distractors: torch.Tensor,
    g: nn.Module,
    target: int,
    *,
    log_semantic: torch.Tensor | None = None,
    semantic_weight: float = 0.4,
    prefilter: float = 1.0,
    max_edits: int | None = None,
    stop_at_flip: bool = True,
    linear_head: tuple[torch.Tensor, torch.Tensor | None] | None = None,
    first_linear: tuple[torch.Tensor, torch.Tensor | None, nn.Module] | None = None,
    path: Literal["auto", "closed_form", "first_linear", "local", "generic"] = "auto",
    chunk: int | None = None,
    prefilter_key: torch.Tensor | None = None,
    prefilter_rounding: Literal["floor", "ceil"] = "floor",
    memory_mb: float = 1024.0,
    local_tail: LocalTail | None = None,
) -> SearchResult:
    """Greedy counterfactual search in feature space.

    Args:
        query: f(I) `[d, h, w]`.
        distractors: f(I') of the n distractors `[n, d, h, w]`.
        g: decision network `[B, d, h, w]` -> logits `[B, C]` (eval mode).
        target: the distractor class c'.
        log_semantic: log L_s `[hw, n*hw]` from `semantic_log_likelihood`; None = no semantic term
            (then ``semantic_weight`` is ignored and the pre-filter is not allowed).
        semantic_weight: lambda (paper 0.4).
        prefilter: fraction of candidates kept before the search (paper 0.1; 1.0 = off), ranked by
            ``prefilter_key`` `[hw, n*hw]` (the authors: the raw auxiliary cosine, `semantic_cosine`),
            or by log L_s when it is None.
        prefilter_rounding: kept = floor (the authors' ``int``) or ceil of ``prefilter * hw * n*hw``.
        max_edits: cap on edits (default none: at most h*w, one per query cell); reaching it is a reported failure.
        stop_at_flip: stop as soon as g predicts ``target`` (False: always make ``max_edits`` edits,
            for benchmarks).
        linear_head: (W `[C, d]`, b `[C]`) when g is pooling + linear; enables the closed form.
        first_linear: (W1 blocks `[h*w, d, out]`, b1, rest) when g starts with a linear layer on the flattened
            map (`split.first_linear_of`); enables the first-linear path.
        path: ``"auto"`` takes the closed form, else the first-linear path, else the local path when g
            is residual blocks + pooling + linear (`local.local_tail_of`), else the generic one.
        chunk: candidates scored per batch; None = as many as fit ``memory_mb`` (the generic path holds
            about ``4 * h * w * d`` floats per candidate, the local path its window's intermediates).
        memory_mb: working-memory budget of one chunk when ``chunk`` is None.
        local_tail: g's `LocalTail` if already parsed (else parsed from g when needed).
    """
    t0 = time.perf_counter()
    _check_inputs(query, distractors)
    if in_training(g):
        raise InputError("g is in training mode (dropout / batch-norm statistics would make scores random): call model.eval()")
    if not 0 < prefilter <= 1:
        raise InputError(f"prefilter must be in (0, 1], got {prefilter}")
    if chunk is not None and chunk < 1:
        raise InputError(f"chunk must be >= 1, got {chunk}")
    if memory_mb <= 0:
        raise InputError(f"memory_mb must be > 0, got {memory_mb}")
    d, h, w = query.shape
    n, hw = distractors.shape[0], h * w
    big_n = n * hw
    if log_semantic is not None and tuple(log_semantic.shape) != (hw, big_n):
        raise InputError(f"log_semantic must be [h*w, n*h*w] = [{hw}, {big_n}], got {tuple(log_semantic.shape)}")
    if log_semantic is None and prefilter < 1:
        raise InputError("the pre-filter ranks candidates by the semantic term: give auxiliary features or set prefilter=1")
    if max_edits is None:
        max_edits = hw  # each edit uses up a query cell: never more than h*w
    elif max_edits < 1:
        raise InputError(f"max_edits must be >= 1, got {max_edits}")
    if path == "closed_form" and linear_head is None:
        raise InputError("path='closed_form' needs g to be global average pooling + linear (linear_head)")
    if path == "first_linear" and first_linear is None:
        raise InputError("path='first_linear' needs g to start with a linear layer on the flattened map (first_linear)")
    if path in ("auto", "local") and local_tail is None and linear_head is None and first_linear is None:
        local_tail = local_tail_of(g)
    if path == "local" and local_tail is None:
        raise InputError("path='local' needs g to be stride-1 torchvision residual blocks (identity skips, BatchNorm) "
                         "+ global average pooling + linear")
    if path == "auto":  # the local path pays off while an edit's window is smaller than the map
        small = local_tail is not None and (2 * local_tail.radius + 1) ** 2 < query.shape[1] * query.shape[2]
        path = ("closed_form" if linear_head is not None else "first_linear" if first_linear is not None
                else "local" if small else "generic")

    dev = query.device
    cur = query.flatten(1).T.contiguous()  # [hw, d]
    dcells = distractors.permute(0, 2, 3, 1).reshape(big_n, d).contiguous()  # [n*hw, d]
    budget = memory_mb * 2**20
    item = query.element_size()
    scorer: _ClosedForm | _FirstLinear | _Local | _Generic
    if path == "closed_form":
        c = linear_head[0].shape[0]  # type: ignore[index]
        chunk = chunk or max(1, int(budget // (3 * c * item)))
        scorer = _ClosedForm(linear_head[0], linear_head[1], cur, dcells, target, chunk)  # type: ignore[index]
    elif path == "first_linear":
        chunk = chunk or max(1, int(budget // (4 * first_linear[0].shape[-1] * item)))  # type: ignore[index]
        scorer = _FirstLinear(*first_linear, cur, dcells, target, chunk)  # type: ignore[misc]
    elif path == "local":
        scorer = _Local(local_tail, cur, dcells, (h, w), target, 1)  # type: ignore[arg-type]
        scorer.chunk = chunk = chunk or max(1, int(budget // scorer.bytes_per_candidate()))
    else:
        chunk = chunk or max(1, int(budget // (4 * hw * d * item)))
        scorer = _Generic(g, cur, dcells, (d, h, w), target, chunk)

    # candidates: flat k = i * (n*hw) + j, optionally the global top fraction by the pre-filter's key
    if log_semantic is not None and prefilter < 1:
        key = prefilter_key if prefilter_key is not None else log_semantic
        if tuple(key.shape) != (hw, big_n):
            raise InputError(f"prefilter_key must be [h*w, n*h*w] = [{hw}, {big_n}], got {tuple(key.shape)}")
        flat = prefilter_candidates(key, prefilter, prefilter_rounding)  # sorted by query cell
    else:
        flat = torch.arange(hw * big_n, device=dev)
    ci, cj = flat // big_n, flat % big_n
    sem = log_semantic.flatten()[flat] if log_semantic is not None else None
    n_candidates = len(flat)

    logits = scorer.z
    query_class = int(logits.argmax())
    probs = [float(torch.softmax(logits.float(), 0)[target])]
    edits: list[Edit] = []
    reason = "max_edits"
    if query_class == target:
        raise InputError(f"g already predicts the target class {target} for the query: nothing to explain")
    fixed = isinstance(scorer, _ClosedForm)
    if fixed:
        # a step of the closed form costs less than compacting the candidate lists: they stay in place and the
        # used ones are masked (-inf), which picks the same candidate (the first maximum in the same order)
        every = n_candidates == hw * big_n
        dead = torch.zeros(n_candidates, dtype=torch.bool, device=dev)
        base = semantic_weight * sem if sem is not None else None
    while True:
        if stop_at_flip and int(logits.argmax()) == target:
            reason = "flipped"
            break
        if len(ci) == 0 or (fixed and bool(dead.all())):
            reason = "flipped" if int(logits.argmax()) == target else "no_candidates"
            break
        if len(edits) >= max_edits:
            reason = "flipped" if int(logits.argmax()) == target else "max_edits"
            break
        if fixed:
            lp = scorer.score_fixed(None if every else flat, ci, cj)
            total = (lp + base).masked_fill_(dead, -math.inf) if base is not None else lp.masked_fill(dead, -math.inf)
            k = int(torch.argmax(total))
            if bool(dead[k]):  # every live candidate scores -inf: the first live one, as the compacted list would give
                k = int((~dead).nonzero()[0])
        else:
            lp = scorer.score(ci, cj)
            total = lp + semantic_weight * sem if sem is not None else lp
            k = int(torch.argmax(total))
        i, j = int(ci[k]), int(cj[k])
        logits = scorer.apply(i, j)
        edits.append(Edit(query_cell=i, distractor=j // hw, distractor_cell=j % hw, score=float(total[k]),
                          log_prob_target=float(lp[k]), log_semantic=float(sem[k]) if sem is not None else None))
        if fixed:
            if every:
                grid = dead.view(hw, big_n)
                grid[i] = True
                grid[:, j] = True
            else:
                dead |= (ci == i) | (cj == j)
        else:
            alive = (ci != i) & (cj != j)
            ci, cj = ci[alive], cj[alive]
            sem = sem[alive] if sem is not None else None
        probs.append(float(torch.softmax(logits.float(), 0)[target]))
    return SearchResult(target_class=target, query_class=query_class, edits=edits, success=reason == "flipped", reason=reason,
                        grid=(h, w), n_distractors=n, candidates=n_candidates, path=path, chunk=chunk,
                        seconds=time.perf_counter() - t0, prob_target=probs)


def apply_edits(query: torch.Tensor, distractors: torch.Tensor, edits: list[Edit]) -> torch.Tensor:
    """The edited features f(I*) `[d, h, w]`: every edit applied to the query at once (eq. 1)."""
    d, h, w = query.shape
    out = query.clone().flatten(1)
    for e in edits:  # a handful of edits; used to re-check results
        out[:, e.query_cell] = distractors[e.distractor].flatten(1)[:, e.distractor_cell]
    return out.view(d, h, w)
