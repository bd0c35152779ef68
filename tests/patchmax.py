"""Re-rankers for the core's job and browser tests (no plugin needed): a plugin module registering
`PatchMax` (patch pairs from the spatial maps) and `PatchMaxCells` (the same from stored cells), and
the small SynthBirds job that uses them."""
from __future__ import annotations

import types

import torch

import xcorr_core as xc
from xcorr_core.jobs import JobSpec

__all__ = ["PatchMax", "PatchMaxCells", "SMALL", "small_job", "register"]


class PatchMax(xc.ReRanker):
    """Per query cell its most similar candidate cell (cosine); the score sums the L best pairs."""

    name = "test_patchmax"
    summary = "sum of the L best cell-to-cell cosines"

    def rerank(self, query: torch.Tensor, candidates: torch.Tensor) -> xc.Ranking:
        q = torch.nn.functional.normalize(query.flatten(1).T, dim=1)  # [HW, C]
        c = torch.nn.functional.normalize(candidates.flatten(2).transpose(1, 2), dim=2)  # [N, HW, C]
        sim = torch.einsum("qc,npc->nqp", q, c)
        best, where = sim.max(dim=2)  # [N, HW]
        top, cells = best.topk(5, dim=1)
        pairs = torch.stack([cells, torch.gather(where, 1, cells)], dim=2)
        scores = top.sum(1)
        return xc.Ranking(order=torch.argsort(scores, descending=True, stable=True), scores=scores, pairs=pairs, weights=top)


class PatchMaxCells(PatchMax):
    """The same scores from stored unit cells (so a job's store keeps the cells layout)."""

    name = "test_patchmax_cells"

    def rerank_cells_many(self, queries: torch.Tensor, cells: xc.CellMaps) -> list[xc.Ranking]:
        out = []
        for qi in range(queries.shape[0]):
            q = torch.nn.functional.normalize(queries[qi].flatten(1).T, dim=1)
            sim = torch.einsum("qc,npc->nqp", q, cells.unit[qi])
            best, where = sim.max(dim=2)
            top, idx = best.topk(5, dim=1)
            pairs = torch.stack([idx, torch.gather(where, 1, idx)], dim=2)
            scores = top.sum(1)
            out.append(xc.Ranking(order=torch.argsort(scores, descending=True, stable=True), scores=scores, pairs=pairs, weights=top))
        return out


_PLUGIN = types.ModuleType("test_jobs_plugin")


@xc.hookimpl
def _register_rerankers(register: object) -> None:
    register(PatchMax)  # type: ignore[operator]
    register(PatchMaxCells)  # type: ignore[operator]


_PLUGIN.register_rerankers = _register_rerankers  # type: ignore[attr-defined]


def register() -> None:
    """Register the test re-rankers (after the autouse fixture reset the registry)."""
    xc.register_plugin(_PLUGIN, name="test_jobs_plugin")


SMALL = {
    "data": {"kind": "synthbirds", "split": "test", "per_class": 2},
    "gallery": {"kind": "synthbirds", "split": "train", "per_class": 6},
    "batch_size": 16,
    "store": {"shard_rows": 40},
    "pipeline": {"shortlist": 30, "rerankers": [{"name": "test_patchmax"}], "decision": {"k": 10},
                 "explainers": [{"name": "nearest_neighbours", "config": {"top": 3}}], "metrics": [{"name": "top1_accuracy"}]},
}


def small_job(**over: object) -> JobSpec:
    return JobSpec.parse({**SMALL, **over})
