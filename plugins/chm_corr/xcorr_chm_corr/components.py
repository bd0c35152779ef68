"""The plugin's components: re-rankers ``chm_corr`` and ``chm_corr_plus``, the ``chm`` matcher,
and the ``chm_corr`` / ``chm_nn`` explainers.

The re-rankers and the matcher load the shipped SynthBirds CHM by default (``weights``: a
head file for the same backbone); assign ``component.chm = my_chmnet`` to use another
CHMNet whose head matches the maps you pass.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal

import torch
from pydantic import Field

import xcorr_core as xc
from xcorr_core.knn import NeighbourExplanation, explain_reranked
from xcorr_core.validation import check_same_device, check_tensor

from .chmnet import CHMNet
from .pretrained import load_pretrained
from .rerank import CHMCorrOutput, chm_corr_rerank
from .scoring import grid_points, paired_cells

__all__ = ["CHMCorrReRanker", "CHMCorrPlusReRanker", "CHMMatcher", "CHMCorrExplainer", "CHMNNExplainer"]


class _UsesCHM:
    """Lazily loads the CHMNet named by ``config.weights`` (None: the shipped one)."""

    config: Any
    _chm: CHMNet | None = None

    @property
    def chm(self) -> CHMNet:
        if self._chm is None:
            w = self.config.weights
            self._chm = load_pretrained(w if w in ("birds", "birds_vit") else Path(w) if w else None)
        return self._chm

    @chm.setter
    def chm(self, model: CHMNet) -> None:
        if not isinstance(model, CHMNet):
            raise xc.InputError(f"chm must be a CHMNet, got {type(model).__name__}")
        self._chm = model


class _CHMConfig(xc.StrictConfig):
    weights: str | None = Field(None, description="a CHM head file, which names its backbone and layer, or the name of a shipped "
                                                          "backbone whose head ships too ('birds', 'birds_vit'); None: 'birds'")
    pairs: int = Field(5, ge=1, description="L: scored pairs per candidate (paper: 5)")
    grid: Literal["centres", "authors"] = Field("centres", description="query grid points: cell centres, or the authors' "
                                                                      "linspace(18, 222, 7) of a 240 px image")
    authors_transpose: bool = Field(False, description="pair cell (r, c) with the transfer of cell (c, r) read as (x, y), "
                                                       "as the authors' code does (a bug kept only to match their numbers)")
    chunk: int = Field(25, ge=1, description="(query, candidate) pairs per CHMNet batch (bounds memory)")


def _rankings(out: CHMCorrOutput) -> list[xc.Ranking]:
    order = torch.argsort(out.scores, dim=1, descending=True, stable=True)
    return [xc.Ranking(order=order[i], scores=out.scores[i], pairs=out.pairs[i], weights=out.weights[i])
            for i in range(out.scores.shape[0])]


class CHMCorrReRanker(_UsesCHM, xc.ReRanker):
    """CHM-Corr: each query cell is paired with the candidate cell its grid point transfers to
    (CHMNet); a candidate scores the mean of the top 5 of (cosine of the pair x CC mask), the
    CC mask keeping query cells whose normalised cross-correlation with the candidate is
    >= 0.55. Shortlist N = 50 and the vote over K = 20 are pipeline settings. ``all_rerankers``
    skips it (a CHMNet per candidate costs far more than a feature comparison): name it."""

    name = "chm_corr"
    summary = "CHM-Corr: CHMNet correspondences, cosine of the top 5 pairs under the cross-correlation mask"
    #: a CHMNet runs on every (query, candidate) pair: name it in a spec's ``rerankers`` to run it
    auto: ClassVar[bool] = False

    class Config(_CHMConfig):
        threshold: float = Field(0.55, ge=0, le=1, description="CC-mask threshold on the min-max normalised map (paper: 0.55)")

    def _run(self, query: torch.Tensor, candidates: torch.Tensor) -> CHMCorrOutput:
        c = self.config
        return chm_corr_rerank(self.chm, query, candidates, threshold=c.threshold, pairs=c.pairs, grid=c.grid,
                               authors_transpose=c.authors_transpose, chunk=c.chunk)

    def rerank(self, query: torch.Tensor, candidates: torch.Tensor) -> Any:
        """``query`` `[C, H, W]`, ``candidates`` `[N, C, H, W]` -> `Ranking` (a list for `[Q, ...]` inputs)."""
        if isinstance(query, torch.Tensor) and query.ndim == 4:
            return self.rerank_many(query, candidates)
        return _rankings(self._run(query, candidates))[0]

    def rerank_many(self, queries: torch.Tensor, candidates: torch.Tensor) -> list[xc.Ranking]:
        """``queries`` `[Q, C, H, W]`, ``candidates`` `[Q, N, C, H, W]`: all Q x N pairs in chunked batches."""
        return _rankings(self._run(queries, candidates))


class CHMCorrPlusReRanker(_UsesCHM, xc.ReRanker):
    """CHM-Corr+: as CHM-Corr, but the mask is the query cells holding chosen part keypoints (the
    paper's user-selected parts) and the score is the mean over every query cell.

    It needs the query's keypoint mask: ``rerank(query, candidates, keypoint_mask=[H W])``, so
    ``all_rerankers`` skips it; `xcorr_chm_corr.scoring.keypoint_mask` builds the mask."""

    name = "chm_corr_plus"
    summary = "CHM-Corr+: CHMNet correspondences scored over query cells of chosen part keypoints"
    auto: ClassVar[bool] = False

    class Config(_CHMConfig):
        pass

    def rerank(self, query: torch.Tensor, candidates: torch.Tensor, keypoint_mask: torch.Tensor | None = None) -> Any:
        """``query`` `[C, H, W]` (or `[Q, ...]`), ``candidates`` `[N, C, H, W]`, ``keypoint_mask`` `[H W]` (or `[Q, H W]`)."""
        if keypoint_mask is None:
            raise xc.InputError("chm_corr_plus needs keypoint_mask: the query cells of the chosen parts "
                                "(xcorr_chm_corr.scoring.keypoint_mask builds it from keypoints)")
        c = self.config
        out = chm_corr_rerank(self.chm, query, candidates, keypoint_mask=keypoint_mask, pairs=c.pairs, grid=c.grid,
                              authors_transpose=c.authors_transpose, chunk=c.chunk)
        ranks = _rankings(out)
        return ranks if query.ndim == 4 else ranks[0]


class CHMMatcher(_UsesCHM, xc.Matcher):
    """CHM correspondences between two feature maps: every cell of ``a`` is matched to the cell of
    ``b`` its centre transfers to; the score is the filtered CHM correlation's peak over that
    cell's source rows (higher = more confident). Both maps must be what the CHM head matches."""

    name = "chm"
    summary = "Convolutional Hough Matching: each cell of a to the cell of b its centre transfers to"

    class Config(xc.StrictConfig):
        weights: str | None = Field(None, description="a CHM head file, which names its backbone and layer, or the name of a shipped "
                                                          "backbone whose head ships too ('birds', 'birds_vit'); None: 'birds'")
        min_score: float = Field(0.0, ge=0, description="drop matches whose score is below this")

    def match(self, a: torch.Tensor, b: torch.Tensor) -> xc.Matches:
        check_tensor("a", a, ndim=3, floating=True, finite=True, non_empty=True)
        check_tensor("b", b, shape=list(a.shape), floating=True, finite=True)
        check_same_device(a=a, b=b)
        h, w = a.shape[-2:]
        with torch.no_grad():
            corr = self.chm.correlate(a[None], b[None])  # [1, (2h)^2, (2h)^2]
            pts = grid_points(h, w, device=a.device).to(a.dtype)
            moved = self.chm.transfer_normalised(corr, pts[None])[0]
            side = int(round(corr.shape[1] ** 0.5))
            peak = corr[0].amax(1).view(1, 1, side, side)
            cell_score = torch.nn.functional.adaptive_max_pool2d(peak, (h, w)).flatten()
        cells = paired_cells(moved, h, w)
        pairs = torch.stack([torch.arange(h * w, device=a.device), cells], 1)
        keep = cell_score >= self.config.min_score
        return xc.Matches(pairs=pairs[keep], scores=cell_score[keep])


class CHMCorrExplainer(xc.Explainer):
    """The paper's CHM-Corr explanation: the query and up to 5 nearest re-ranked training images of
    the predicted class, each with its 5 scored correspondences (the pairs drawn are exactly the
    scored pairs). ``boxes=False`` gives CHM-NN (same images, no boxes)."""

    name = "chm_corr"
    summary = "CHM-Corr explanation: 5 re-ranked neighbours of the predicted class with their 5 scored correspondences"
    requires: ClassVar[frozenset[str]] = frozenset({"neighbour_ids", "neighbour_labels", "neighbour_scores", "prediction",
                                                     "ranking", "shortlist_ids", "grid"})
    methods: ClassVar[frozenset[str]] = frozenset({"chm_corr", "chm_corr_plus"})

    class Config(xc.StrictConfig):
        top: int = Field(5, ge=1, description="support images (paper: 5)")
        boxes: bool = Field(True, description="draw the scored correspondences (CHM-Corr); False gives CHM-NN")

    def explain(self, case: xc.Case) -> NeighbourExplanation:
        return explain_reranked(case, top=self.config.top, method="chm_corr" if self.config.boxes else "chm_nn",
                                meta={"boxes": self.config.boxes, "weights": "cosine x mask"})


class CHMNNExplainer(CHMCorrExplainer):
    """CHM-NN, the paper's control arm: the CHM-Corr ranking's images without correspondence boxes."""

    name = "chm_nn"
    summary = "CHM-NN: the CHM-Corr re-ranked neighbours shown without boxes"

    class Config(CHMCorrExplainer.Config):
        boxes: bool = Field(False, description="draw the scored correspondences (False: CHM-NN)")
