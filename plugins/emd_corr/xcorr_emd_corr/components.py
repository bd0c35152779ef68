"""The plugin's components: the `emd_corr` re-ranker, the `emd_corr` explainer (and its
EMD-NN variant without boxes) and the `explanation_diversity` metric."""
from __future__ import annotations

from typing import Any, ClassVar, Literal

import torch
from pydantic import Field

import xcorr_core as xc
from xcorr_core.knn import NeighbourExplanation, explain_reranked, support_neighbours
from xcorr_core.validation import check_tensor

from .emd import emd_corr_scores, emd_corr_scores_cells

__all__ = ["EMDCorrReRanker", "EMDCorrExplainer", "ExplanationDiversity"]


class EMDCorrReRanker(xc.ReRanker):
    """Re-rank candidates by the Sinkhorn flow between patch embeddings (EMD-Corr).

    The shortlist size N = 50 and the vote over k = 20 are pipeline settings
    (``shortlist`` and ``decision.k``, whose defaults are the paper's).
    """

    name = "emd_corr"
    summary = "EMD-Corr: Sinkhorn flows between patch embeddings, score over the 5 largest flows"

    class Config(xc.StrictConfig):
        eps: float = Field(0.05, gt=0, allow_inf_nan=False, description="entropic regularisation; K = exp(-(1 - sim) / eps) (authors: 0.05)")
        pairs: int = Field(5, ge=1, description="L: the largest flows that make the score (paper: 5)")
        max_iter: int = Field(100, ge=1, description="Sinkhorn iteration cap (authors: 100)")
        tol: float | None = Field(None, gt=0, description="tolerance of the stopping rule; None: the rule's own default (authors: 0.1 "
                                                          "on mean |r - r_prev|, as their code; marginal: 1e-6 on the row-marginal error)")
        stop: Literal["authors", "marginal"] = Field("authors", description="'authors': mean |r - r_prev| over a query's candidates; "
                                                                             "'marginal': every problem's row-marginal error")
        clamp_negative_weights: bool | Literal["auto"] = Field(
            "auto", description="clamp negative patch weights to 0 (DeepFace-EMD). 'auto': clamp, which changes nothing on "
                                "non-negative (post-ReLU) features, where no weight is negative, so it equals the authors' "
                                "unclamped code there, and keeps signed features (GELU / LayerNorm: ViTs, EfficientNets) "
                                "valid; false: the authors' code as written (an error on signed features)")
        weight_eps: float = Field(1e-5, ge=0, description="the + 1e-5 in the weight normalisation")
        chunk: int = Field(256, ge=1, description="candidates per chunk in the similarity stage (bounds memory)")
        solver: Literal["auto", "scaling", "log"] = Field("auto", description="Sinkhorn solver: 'scaling' (fast, as the authors), "
                                                                           "'log' (safe for tiny eps), 'auto' (scaling unless K underflows)")

    def _scores(self, query: torch.Tensor, candidates: torch.Tensor) -> Any:
        c = self.config
        return emd_corr_scores(query, candidates, eps=c.eps, pairs=c.pairs, max_iter=c.max_iter, tol=c.tol, stop=c.stop,
                               clamp_negative=bool(c.clamp_negative_weights), weight_eps=c.weight_eps, chunk=c.chunk, solver=c.solver)

    def rerank(self, query: torch.Tensor, candidates: torch.Tensor) -> Any:
        """``query`` `[C, H, W]`, ``candidates`` `[N, C, H, W]` -> `Ranking`.

        Also accepts ``query`` `[Q, C, H, W]` with ``candidates`` `[Q, N, C, H, W]` and then
        returns a list of Q rankings (same as `rerank_many`).
        """
        if isinstance(query, torch.Tensor) and query.ndim == 4:
            return self.rerank_many(query, candidates)
        return self._rankings(self._scores(query, candidates))[0]

    def rerank_many(self, queries: torch.Tensor, candidates: torch.Tensor) -> list[xc.Ranking]:
        """Many queries at once: ``queries`` `[Q, C, H, W]`, ``candidates`` `[Q, N, C, H, W]`."""
        return self._rankings(self._scores(queries, candidates))

    def rerank_cells_many(self, queries: torch.Tensor, cells: xc.CellMaps) -> list[xc.Ranking]:
        """Many queries against candidates stored as cells: ``queries`` `[Q, C, H, W]`, ``cells`` with
        unit `[Q, N, HW, C]` (a store in the ``cells`` layout; see `emd_corr_scores_cells`)."""
        c = self.config
        return self._rankings(emd_corr_scores_cells(queries, cells, eps=c.eps, pairs=c.pairs, max_iter=c.max_iter, tol=c.tol,
                                                    stop=c.stop, clamp_negative=bool(c.clamp_negative_weights), weight_eps=c.weight_eps,
                                                    solver=c.solver))

    @staticmethod
    def _rankings(out: Any) -> list[xc.Ranking]:
        order = torch.argsort(out.scores, dim=1, descending=True, stable=True)
        return [xc.Ranking(order=order[i], scores=out.scores[i], pairs=out.pairs[i], weights=out.flows[i])
                for i in range(out.scores.shape[0])]


class EMDCorrExplainer(xc.Explainer):
    """The paper's EMD-Corr explanation: up to 5 nearest re-ranked neighbours of the predicted
    class, each with its 5 scored patch pairs and their flows. ``boxes=False`` gives EMD-NN
    (the same images, no patch annotations)."""

    name = "emd_corr"
    summary = "EMD-Corr explanation: 5 re-ranked neighbours of the predicted class with their 5 patch pairs and flows"
    requires: ClassVar[frozenset[str]] = frozenset({"neighbour_ids", "neighbour_labels", "neighbour_scores", "prediction",
                                                     "ranking", "shortlist_ids", "grid"})
    #: only decisions made by the EMD-Corr re-ranker are explained
    methods: ClassVar[frozenset[str]] = frozenset({"emd_corr"})

    class Config(xc.StrictConfig):
        top: int = Field(5, ge=1, description="support images (paper: 5)")
        boxes: bool = Field(True, description="draw the patch pairs (EMD-Corr); False gives EMD-NN")

    def explain(self, case: xc.Case) -> NeighbourExplanation:
        return explain_reranked(case, top=self.config.top, method="emd_corr" if self.config.boxes else "emd_nn",
                                meta={"boxes": self.config.boxes, "weights": "flows"})


class ExplanationDiversity(xc.Metric):
    """How many distinct gallery images the explanations show: unique support images /
    support slots, over every query (support = first ``top`` neighbours of the predicted class)."""

    name = "explanation_diversity"
    summary = "Distinct support images shown across all explanations / slots shown"
    requires: ClassVar[frozenset[str]] = frozenset({"predictions", "neighbour_ids", "neighbour_labels"})

    class Config(xc.StrictConfig):
        top: int = Field(5, ge=1)

    def compute(self, **data: Any) -> xc.MetricResult:
        pred = check_tensor("predictions", data.get("predictions"), ndim=1, floating=False, non_empty=True)
        ids = check_tensor("neighbour_ids", data.get("neighbour_ids"), ndim=2, floating=False)
        labels = check_tensor("neighbour_labels", data.get("neighbour_labels"), shape=list(ids.shape), floating=False)
        if ids.shape[0] != pred.shape[0]:
            raise xc.InputError(f"neighbour_ids has {ids.shape[0]} rows for {pred.shape[0]} predictions")
        ranks, valid = support_neighbours(labels, pred, self.config.top)
        shown = ids.gather(1, ranks)[valid]
        per_query = valid.sum(1).float()
        return xc.MetricResult(name=self.name, value=shown.unique().numel() / max(1, shown.numel()), per_sample=per_query,
                               n=pred.numel(), details={"distinct_images": int(shown.unique().numel()), "slots": int(shown.numel()),
                                                        "mean_support_images": float(per_query.mean())})
