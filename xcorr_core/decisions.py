"""One method's decisions over a data set (`Decisions`), and how a re-ranker's are made: each
query's shortlist re-ranked, every ranking checked against the contract (a permutation of its
candidates), the top k voting. Used by `Pipeline`; plugins and jobs read `Decisions`.
Depends on torch, pydantic and the core's components, errors, index, knn, registry and results.
"""
from __future__ import annotations

import time
from typing import Any

import torch
from pydantic import BaseModel
from tqdm.auto import tqdm

from . import registry
from .components import BatchedReRanker, CellReRanker
from .errors import ComponentOutputError
from .index import SearchResult
from .knn import majority_vote
from .results import Ranking

__all__ = ["Decisions", "rerank_decisions", "check_ranking", "owner"]


class Decisions(BaseModel):
    """One method's decisions over a data set: predictions and confidences `[Q]`, the k neighbours
    that voted (``ids``, ``labels``, ``scores`` `[Q, k]`) and, for a re-ranker, each query's `Ranking`
    of its shortlist (``shortlist_ids`` / ``shortlist_scores`` `[Q, N]`) on maps of ``grid``."""

    model_config = {"arbitrary_types_allowed": True}
    method: str
    predictions: torch.Tensor
    confidences: torch.Tensor
    ids: torch.Tensor
    labels: torch.Tensor
    scores: torch.Tensor
    rankings: dict[int, Ranking] | None = None
    shortlist_ids: torch.Tensor | None = None
    shortlist_scores: torch.Tensor | None = None
    grid: tuple[int, int] | None = None
    seconds: float = 0.0


def owner(kind: str, name: str, comp: Any) -> str:
    """``re-ranker 'x' (plugin 'p')`` for error messages."""
    cls_name = getattr(type(comp), "name", name)
    plugin = next((c.plugin for c in registry.components(kind) if c.name == cls_name), "?")
    label = {"reranker": "re-ranker"}.get(kind, kind)
    return f"{label} {name!r} (plugin {plugin!r})"


def check_ranking(ranking: Any, n: int, who: str) -> Ranking:
    """A re-ranker's output must be a `Ranking` whose ``order`` is a permutation of its n candidates."""
    if not isinstance(ranking, Ranking):
        raise ComponentOutputError(f"{who} returned {type(ranking).__name__}, not a Ranking")
    if ranking.scores.shape[0] != n:
        raise ComponentOutputError(f"{who} scored {ranking.scores.shape[0]} candidates, but it was given {n}")
    if not torch.equal(torch.sort(ranking.order.cpu()).values, torch.arange(n)):
        raise ComponentOutputError(f"{who} returned an order that is not a permutation of its {n} candidates: "
                                   f"{ranking.order.tolist()[:12]}{' ...' if n > 12 else ''}")
    return ranking


def rerank_decisions(rname: str, rr: Any, qmaps: torch.Tensor, res: SearchResult, store: Any, *, k: int, step: int,
                     num_classes: int, tie_break: str, progress: bool | None = None) -> Decisions:
    """Re-rank each query's shortlist ``res`` (positions into ``store``) with re-ranker ``rr`` and vote
    over the top ``k``: the re-ranker's `Decisions`. ``qmaps`` `[Q, C, H, W]` are the queries' maps;
    batched re-rankers get ``step`` queries per call, cell re-rankers read a cells-layout store's cells.
    A ranking that breaks the contract is a `ComponentOutputError` naming the re-ranker's plugin."""
    t0 = time.perf_counter()
    nq = qmaps.shape[0]
    order_ids = torch.empty(nq, k, dtype=torch.int64)
    order_labels = torch.empty(nq, k, dtype=torch.int64)
    order_scores = torch.empty(nq, k)
    rankings: dict[int, Ranking] = {}
    dev = qmaps.device
    many = rr.rerank_many if isinstance(rr, BatchedReRanker) else None
    # a re-ranker that reads cells gets them straight from a store in the cells layout
    cells_many = rr.rerank_cells_many if isinstance(rr, CellReRanker) and getattr(store, "layout", "maps") == "cells" else None
    step = step if callable(many) or callable(cells_many) else 1
    who = owner("reranker", rname, rr)  # for error messages; looked up once, not per query
    n_short = res.positions.shape[1]
    for s0 in tqdm(range(0, nq, step), desc=rname, disable=(None if progress is None else not progress), leave=False):
        idx = list(range(s0, min(nq, s0 + step)))
        if callable(cells_many):
            cells = store.get_cells(res.positions[idx].flatten(), device=dev).unflatten((len(idx), n_short))
            out = cells_many(qmaps[idx].float(), cells)
            if not isinstance(out, (list, tuple)) or len(out) != len(idx):
                raise ComponentOutputError(f"{who}: rerank_cells_many returned "
                                           f"{len(out) if isinstance(out, (list, tuple)) else type(out).__name__} rankings for {len(idx)} queries")
            _keep_rankings(idx, out, n_short, who, res, order_ids, order_labels, order_scores, rankings, k)
            continue
        cands = store.get(res.positions[idx].flatten(), device=dev).unflatten(0, (len(idx), -1))
        if callable(many):
            out = many(qmaps[idx].float(), cands)
            if not isinstance(out, (list, tuple)) or len(out) != len(idx):
                raise ComponentOutputError(f"{who}: rerank_many returned "
                                           f"{len(out) if isinstance(out, (list, tuple)) else type(out).__name__} rankings for {len(idx)} queries")
        else:
            out = [rr.rerank(qmaps[i].float(), cands[j]) for j, i in enumerate(idx)]
        _keep_rankings(idx, out, cands.shape[1], who, res, order_ids, order_labels, order_scores, rankings, k)
    pred, votes = majority_vote(order_labels, num_classes, tie_break)
    return Decisions(method=rname, predictions=pred, confidences=votes.float() / k, ids=order_ids, labels=order_labels,
                     scores=order_scores, rankings=rankings, shortlist_ids=res.ids.cpu(), shortlist_scores=res.scores.cpu(),
                     grid=tuple(store.map_shape[1:]), seconds=time.perf_counter() - t0)


def _keep_rankings(idx: list[int], out: Any, n: int, who: str, res: Any, order_ids: torch.Tensor, order_labels: torch.Tensor,
                   order_scores: torch.Tensor, rankings: dict[int, Ranking], k: int) -> None:
    """Check each query's ranking of its ``n`` candidates and keep its top ``k``."""
    for i, ranking in zip(idx, out):
        ranking = check_ranking(ranking, n, who)
        top = ranking.order[:k].cpu()
        order_ids[i], order_labels[i] = res.ids[i][top], res.labels[i][top]
        order_scores[i] = ranking.scores.cpu()[top]
        rankings[i] = ranking.to("cpu")
