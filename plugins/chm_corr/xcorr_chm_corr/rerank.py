"""CHM-Corr re-ranking of a shortlist: CHMNet correspondences for every (query, candidate) pair
in chunked batches, then the masked cosine scores of `scoring`.

`chm_cells` runs the CHMNet part (the query's grid points transferred onto every candidate),
`chm_corr_rerank` the whole method. Query and candidates are the feature maps the CHM head
matches (the shipped CHM: the SynthBirds SmallResNet layer4 maps the pipeline stores), so
nothing is recomputed from images. Depends on torch, `chmnet`, `correlation` and `scoring`.
"""
from __future__ import annotations

from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict

from xcorr_core.errors import InputError
from xcorr_core.validation import check_same_device, check_tensor

from .chmnet import CHMNet
from .correlation import scale_sides
from .scoring import cc_mask, chm_corr_scores, grid_points, paired_cells

__all__ = ["chm_transfers", "chm_cells", "image_cells", "chm_corr_rerank", "CHMCorrOutput"]


def _check(query: torch.Tensor, cands: torch.Tensor, chm: CHMNet) -> tuple[torch.Tensor, torch.Tensor]:
    if query.ndim == 3:
        check_tensor("candidates", cands, ndim=4, floating=True, finite=True, non_empty=True)
        query, cands = query[None], cands[None]
    check_tensor("query", query, ndim=4, floating=True, finite=True, non_empty=True)
    check_tensor("candidates", cands, ndim=5, floating=True, finite=True, non_empty=True)
    check_same_device(query=query, candidates=cands)
    q, n, c, h, w = cands.shape
    if query.shape[0] != q or tuple(query.shape[1:]) != (c, h, w):
        raise InputError(f"candidates {list(cands.shape)} do not fit queries {list(query.shape)}: "
                         "need query [C, H, W] with candidates [N, C, H, W] (or [Q, ...] with [Q, N, ...])")
    if c != chm.feat_dim:
        raise InputError(f"the CHM head matches {chm.feat_dim}-channel maps but the maps have {c} channels: a CHM head is "
                         f"trained for one backbone's layer, so this backbone ({c} channels) needs a head of its own "
                         "(xcorr_chm_corr.training.train_head on keypoint pairs of its maps), or use the CHM's backbone layer "
                         "as the pipeline's spatial layer, or compute transfers on images with CHMNet.transfer")
    if h != w:
        raise InputError(f"CHM needs square maps, got {h} x {w}")
    return query, cands


def chm_transfers(chm: CHMNet, query: torch.Tensor, cands: torch.Tensor, *, grid: Literal["centres", "authors"] = "centres",
                  chunk: int = 25, cand_scales: list[torch.Tensor] | None = None) -> torch.Tensor:
    """Normalised (x, y) `[Q, N, h w, 2]` in each candidate of the query's grid points.

    ``query`` `[Q, C, h, w]`, ``cands`` `[Q, N, C, h, w]``. For each query, CHMNet runs on its
    candidates in chunks of ``chunk`` (the query's scale features computed once per chunk;
    memory grows with chunk x (2h)^4). ``cand_scales``: the candidates' scale features
    (`CHMLearner.scale_features`, one `[Q, N, C', side^2]` per scale) when computed beforehand —
    once per gallery image instead of once per (query, candidate) pair.
    """
    q, n, c, h, w = cands.shape
    if cand_scales is not None:
        want = [(q, n, conv.out_channels, side * side) for side, conv in zip(scale_sides(h, chm.learner.scales), chm.learner.conv2ds)]
        if [tuple(t.shape) for t in cand_scales] != want:
            raise InputError(f"cand_scales must hold one [Q, N, C', side^2] tensor per scale: {want}, "
                             f"got {[tuple(t.shape) for t in cand_scales]}")
    pts = grid_points(h, w, grid, device=cands.device).to(cands.dtype)
    out = torch.empty(q, n, h * w, 2, dtype=cands.dtype, device=cands.device)
    with torch.no_grad():
        for i in range(q):
            for s in range(0, n, chunk):
                scales = None if cand_scales is None else [t[i, s:s + chunk] for t in cand_scales]
                corr = chm.correlate(query[i:i + 1], cands[i, s:s + chunk], scales)
                out[i, s:s + chunk] = chm.transfer_normalised(corr, pts.expand(corr.shape[0], -1, -1))
    return out


def chm_cells(chm: CHMNet, query: torch.Tensor, cands: torch.Tensor, *, grid: Literal["centres", "authors"] = "centres",
              authors_transpose: bool = False, chunk: int = 25, cand_scales: list[torch.Tensor] | None = None) -> torch.Tensor:
    """Candidate cell paired with each query cell, long `[Q, N, h w]` (see `scoring.paired_cells`)."""
    h, w = cands.shape[-2:]
    transfers = chm_transfers(chm, query, cands, grid=grid, chunk=chunk, cand_scales=cand_scales)
    return paired_cells(transfers, h, w, authors_transpose=authors_transpose)


def image_cells(chm: CHMNet, query_image: torch.Tensor, cand_images: torch.Tensor, grid: tuple[int, int] = (7, 7), *,
                points: Literal["centres", "authors"] = "centres", authors_transpose: bool = False, chunk: int = 10) -> torch.Tensor:
    """Candidate cell paired with each query cell, long `[N, h w]`, from images (the authors' setting:
    CHMNet on its own images, e.g. ImageNet-normalised 240 px, while the embeddings come from
    another network whose maps have the ``grid`` `(h, w)`).

    ``query_image`` `[3, H, W]`, ``cand_images`` `[N, 3, H, W]` as the CHMNet takes them; the
    query's grid points are placed on the same image frame as the embedding grid.
    """
    check_tensor("query_image", query_image, ndim=3, floating=True, finite=True)
    check_tensor("cand_images", cand_images, ndim=4, floating=True, non_empty=True)
    h, w = grid
    pts = grid_points(h, w, points, device=cand_images.device).to(cand_images.dtype)
    out = []
    with torch.no_grad():
        for s in range(0, cand_images.shape[0], chunk):
            c = cand_images[s:s + chunk]
            corr = chm(query_image[None], c)  # the query's features once per chunk
            out.append(chm.transfer_normalised(corr, pts.expand(c.shape[0], -1, -1)))
    return paired_cells(torch.cat(out), h, w, authors_transpose=authors_transpose)


class CHMCorrOutput(BaseModel):
    """CHM-Corr scores of Q queries x N candidates.

    Attributes:
        scores: `[Q, N]` (higher = more similar).
        pairs: long `[Q, N, L, 2]` the scored (query cell, candidate cell) pairs, row-major.
        weights: `[Q, N, L]` their cosine x mask.
        cells: long `[Q, N, h w]` the candidate cell of every query cell.
        mask: `[Q, N, h w]` the mask the scores used.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)
    scores: torch.Tensor
    pairs: torch.Tensor
    weights: torch.Tensor
    cells: torch.Tensor
    mask: torch.Tensor


def chm_corr_rerank(chm: CHMNet | None, query: torch.Tensor, cands: torch.Tensor, *, threshold: float = 0.55, pairs: int = 5,
                    keypoint_mask: torch.Tensor | None = None, grid: Literal["centres", "authors"] = "centres",
                    authors_transpose: bool = False, chunk: int = 25, cells: torch.Tensor | None = None) -> CHMCorrOutput:
    """CHM-Corr (or, with ``keypoint_mask``, CHM-Corr+) scores of candidates against queries.

    Args:
        chm: the CHMNet whose head matches these maps.
        query: `[C, h, w]` or `[Q, C, h, w]` maps (embedding and CHM features alike).
        cands: `[N, C, h, w]` or `[Q, N, C, h, w]`.
        threshold: CC-mask threshold on the min-max normalised cross-correlation (paper: 0.55).
        pairs: L, the top cells that make the CHM-Corr score (paper: 5).
        keypoint_mask: `[h w]` or `[Q, h w]` query-cell mask of CHM-Corr+ (score = mean over all cells).
        grid: the query's grid points (cell centres, or the authors' fixed grid).
        authors_transpose: reproduce the authors' transposed cell pairing.
        chunk: pairs per CHMNet batch.
        cells: long `[N, h w]` / `[Q, N, h w]` pairings computed elsewhere (e.g. `image_cells` on
            the CHMNet's own images); then ``chm`` may be None and the maps are only scored.
    """
    if cells is None:
        if chm is None:
            raise InputError("chm_corr_rerank needs a CHMNet, or the cells computed elsewhere")
        query, cands = _check(query, cands, chm)
        cells = chm_cells(chm, query, cands, grid=grid, authors_transpose=authors_transpose, chunk=chunk)
    else:
        if query.ndim == 3:
            query, cands, cells = query[None], cands[None], cells[None] if cells.ndim == 2 else cells
        check_tensor("query", query, ndim=4, floating=True, finite=True, non_empty=True)
        check_tensor("candidates", cands, ndim=5, floating=True, finite=True, non_empty=True)
        hw = query.shape[-1] * query.shape[-2]
        check_tensor("cells", cells, shape=[query.shape[0], cands.shape[1], hw], floating=False)
        if bool((cells < 0).any()) or bool((cells >= hw).any()):
            raise InputError(f"cells must index the {hw} candidate cells")
    if keypoint_mask is None:
        mask = cc_mask(query, cands, threshold)
        reduce: Literal["top", "all"] = "top"
    else:
        if keypoint_mask.dtype != torch.bool and not bool(((keypoint_mask == 0) | (keypoint_mask == 1)).all()):
            raise InputError("keypoint_mask must be bool (or 0/1): True for the query cells that hold a keypoint")
        km = keypoint_mask.to(cands.dtype)
        if km.ndim == 1:
            km = km[None].expand(query.shape[0], -1)
        if tuple(km.shape) != (query.shape[0], cells.shape[-1]):
            raise InputError(f"keypoint_mask must be [{cells.shape[-1]}] or [Q, {cells.shape[-1]}], got {list(keypoint_mask.shape)}")
        mask = km[:, None, :].expand_as(cells).to(cands.dtype)
        reduce = "all"
    scores, out_pairs, weights = chm_corr_scores(query, cands, cells, mask, pairs=pairs, reduce=reduce)
    return CHMCorrOutput(scores=scores, pairs=out_pairs, weights=weights, cells=cells, mask=mask)
