"""The ``scc`` explainer (semantically consistent counterfactuals) and the ``goyal`` baseline.

    split = split_model(model, "layer4")               # f | g
    cf = SCCExplainer().explain_images(split, query, distractors, aux=load_auxiliary("ssl"))
    cf.edits, cf.success, cf.plot(query, distractors), cf.to_json()

``goyal`` is the same search with lambda = 0, one distractor and no pre-filter (Goyal et al. 2019).
"""
from __future__ import annotations

from typing import Any, ClassVar, Literal

import torch
from pydantic import Field
from torch import nn

import xcorr_core as xc
from xcorr_core.errors import InputError
from xcorr_core.validation import check_tensor

from .auxiliary import AuxiliaryModel, load_auxiliary
from .search import Edit, apply_edits, search_counterfactual, semantic_cosine
from .split import ModelSplit, split_model

__all__ = ["Counterfactual", "SCCExplainer", "GoyalExplainer", "explain_counterfactual", "counterfactual_from_features", "edited_features"]


class Counterfactual(xc.Explanation):
    """A visual counterfactual: which query cells to replace by which distractor cells for g to say c'.

    Attributes:
        query_class: c, the model's class for the query.
        target_class: c', the distractor class.
        edits: in order; cells are row-major indices ``r * w + c`` of the `grid`.
        success: the edited features are classified as c'.
        reason: ``"flipped"``, ``"max_edits"`` or ``"no_candidates"``.
        grid: `(h, w)` of f's output; image_size: `(H, W)` of the images.
        distractor_ids: data-set ids of the distractors, when given.
        prob_target: g_c' before the first edit and after each edit.
        candidates: candidate pairs after the pre-filter; seconds: search time (features excluded).
    """

    query_class: int
    target_class: int
    edits: list[Edit]
    success: bool
    reason: str
    grid: tuple[int, int]
    image_size: tuple[int, int]
    n_distractors: int
    distractor_ids: list[int] | None = None
    prob_target: list[float]
    candidates: int
    seconds: float
    path: str

    @property
    def num_edits(self) -> int:
        return len(self.edits)

    def plot(self, query_image: torch.Tensor | None = None, distractor_images: torch.Tensor | None = None,
             class_names: Any = None, **kwargs: Any) -> Any:
        from .figure import plot_counterfactual

        return plot_counterfactual(self, query_image, distractor_images, class_names=class_names, **kwargs)


class SCCExplainer(xc.Explainer):
    """Semantically consistent counterfactuals (Vandenhende et al., ECCV 2022)."""

    name = "scc"
    summary = "Semantically consistent visual counterfactuals: greedy cell edits from distractors, semantic term, pre-filter"
    requires: ClassVar[frozenset[str]] = frozenset({"image", "model", "distractors"})

    class Config(xc.StrictConfig):
        layer: str = Field("layer4", description="where f ends (dotted name) or a preset: 'paper' (the authors' cut: ResNet-50 after "
                                                 "'layer4.0', VGG-16 after 'features'), 'closed_form' (a ResNet after 'layer4', exact fast search)")
        semantic_weight: float = Field(0.4, ge=0, description="lambda of eq. 4 (paper 0.4); 0 = no semantic term")
        temperature: float = Field(0.1, gt=0, description="tau of the non-parametric softmax (paper 0.1)")
        prefilter: float = Field(0.1, gt=0, le=1, description="fraction of candidates kept by the pre-filter (paper 0.1; the authors' config 0.2; 1 = off)")
        prefilter_by: Literal["cosine", "log_softmax"] = Field(
            "cosine", description="pre-filter ranking: 'cosine' the raw auxiliary cosine over all pairs (the authors' code); "
                                  "'log_softmax' log L_s, normalised per query cell")
        prefilter_rounding: Literal["floor", "ceil"] = Field("floor", description="candidates kept: floor (the authors' int) or ceil of the fraction")
        distractors: int = Field(20, ge=1, description="distractor images used at most (paper up to 20)")
        max_edits: int | None = Field(None, ge=1, description="cap on edits (default: every cell); reaching it is a reported failure")
        path: Literal["auto", "closed_form", "first_linear", "local", "generic"] = Field(
            "auto", description="closed form when g is pooling + linear; first-linear when g starts with a linear layer (VGG); "
                                "local when g is residual blocks + pooling + linear (the paper's ResNet-50 cut); else generic")
        chunk: int | None = Field(None, ge=1, description="candidates scored per batch; None = as many as fit memory_mb")
        memory_mb: float = Field(1024.0, gt=0, description="working-memory budget of one batch of candidates (MB)")
        auxiliary: Literal["ssl", "parts"] = Field("ssl", description="explain(case) in a pipeline: the shipped auxiliary model of "
                                                                       "the semantic term and pre-filter (SynthBirds)")

    def __init__(self, config: Any = None) -> None:
        super().__init__(config)
        self._split: tuple[int, ModelSplit] | None = None
        self._aux: AuxiliaryModel | None = None

    def explain_images(self, model: nn.Module | ModelSplit, query_image: torch.Tensor, distractor_images: torch.Tensor,
                       aux: AuxiliaryModel | None = None, *, target: int | None = None, query_id: int | None = None,
                       distractor_ids: list[int] | None = None) -> Counterfactual:
        """Counterfactual for ``query_image`` `[3, H, W]` from ``distractor_images`` `[n, 3, H, W]`.

        ``model`` is a classifier (cut at ``config.layer``) or a ready `ModelSplit`. The distractors
        must all be classified as the target class c' (default: their class), which must differ from
        the query's class. ``aux`` is required when the semantic term is on.
        """
        c = self.config
        split = model if isinstance(model, ModelSplit) else split_model(model, c.layer)
        return explain_counterfactual(
            split, query_image, distractor_images, aux, target=target, query_id=query_id, distractor_ids=distractor_ids,
            method=self.name, semantic_weight=c.semantic_weight, temperature=c.temperature, prefilter=c.prefilter,
            distractors=c.distractors, max_edits=c.max_edits, path=c.path, chunk=c.chunk, prefilter_by=c.prefilter_by,
            prefilter_rounding=c.prefilter_rounding, memory_mb=c.memory_mb,
        )

    def explain(self, case: xc.Case) -> Counterfactual:
        """In a pipeline: the case's model (cut at ``config.layer``), its image, and the gallery
        distractors the pipeline chose (the nearest gallery class other than the prediction). As the
        authors' code does, distractors the model does not classify as that class are dropped; the
        query must be classified as another class (`InputError` otherwise)."""
        if case.model is None or case.image is None or case.distractors is None:
            raise InputError(f"{self.name} needs the case's model, image and distractors (a pipeline supplies them; "
                             "or call explain_images(model, query_image, distractor_images, aux))")
        c = self.config
        key = id(case.model)
        if self._split is None or self._split[0] != key:
            self._split = (key, split_model(case.model, c.layer))
        split = self._split[1]
        target = case.distractor_class
        with torch.no_grad():
            pred = split.logits(split.features(case.distractors.float())).argmax(1)
        if target is None:
            target = int(torch.mode(pred).values)
        keep = (pred == target).nonzero().flatten()
        if len(keep) == 0:
            raise InputError(f"{self.name}: the model classifies none of the {len(pred)} distractors as their class {target}")
        ids = case.distractor_ids[keep].tolist() if case.distractor_ids is not None else None
        if self._aux is None and (c.semantic_weight > 0 or c.prefilter < 1):
            self._aux = load_auxiliary(c.auxiliary)
        return self.explain_images(split, case.image.float(), case.distractors[keep].float(), self._aux, target=target,
                                   query_id=case.query_id, distractor_ids=ids)


class GoyalExplainer(SCCExplainer):
    """Goyal et al. (ICML 2019): the same search without semantic term, one distractor, no pre-filter."""

    name = "goyal"
    summary = "Counterfactual visual explanations (Goyal et al. 2019): greedy cell edits from one distractor"

    class Config(SCCExplainer.Config):
        semantic_weight: float = Field(0.0, ge=0, description="lambda (0: the baseline has no semantic term)")
        prefilter: float = Field(1.0, gt=0, le=1, description="no pre-filter in the baseline")
        distractors: int = Field(1, ge=1, description="one distractor image")


def explain_counterfactual(
    split: ModelSplit, query_image: torch.Tensor, distractor_images: torch.Tensor, aux: AuxiliaryModel | None = None, *,
    target: int | None = None, query_id: int | None = None, distractor_ids: list[int] | None = None, method: str = "scc",
    semantic_weight: float = 0.4, temperature: float = 0.1, prefilter: float = 0.1, distractors: int = 20,
    max_edits: int | None = None, path: Literal["auto", "closed_form", "first_linear", "local", "generic"] = "auto", chunk: int | None = None,
    prefilter_by: Literal["cosine", "log_softmax"] = "cosine", prefilter_rounding: Literal["floor", "ceil"] = "floor",
    memory_mb: float = 1024.0,
) -> Counterfactual:
    """Functional form of `SCCExplainer.explain_images` (same arguments as its config)."""
    check_tensor("query_image", query_image, ndim=3, floating=True, non_empty=True, finite=True)
    if not isinstance(distractor_images, torch.Tensor) or distractor_images.ndim != 4 or len(distractor_images) == 0:
        raise InputError("give at least one distractor image: distractor_images must be [n >= 1, 3, H, W]"
                         f", got {getattr(distractor_images, 'shape', type(distractor_images).__name__)}")
    check_tensor("distractor_images", distractor_images, ndim=4, floating=True, finite=True)
    if distractor_images.shape[1:] != query_image.shape:
        raise InputError(f"distractor images {tuple(distractor_images.shape[1:])} and the query {tuple(query_image.shape)} differ in size")
    if distractor_ids is not None and len(distractor_ids) != len(distractor_images):
        raise InputError("distractor_ids needs one id per distractor image")
    if semantic_weight > 0 and aux is None:
        raise InputError("the semantic term needs an auxiliary model: pass aux= (e.g. load_auxiliary('ssl')) or set semantic_weight=0")
    distractor_images = distractor_images[:distractors]
    distractor_ids = distractor_ids[:distractors] if distractor_ids is not None else None
    if split.training:
        raise InputError("the model is in training mode: call model.eval() first")
    images = torch.cat([query_image[None], distractor_images])
    feats = split.features(images)
    preds = split.logits(feats).argmax(1)
    qc = int(preds[0])
    dpred = preds[1:]
    if target is None:
        target = int(torch.mode(dpred).values)
    if target == qc:
        raise InputError(f"the distractors' class {target} is the query's own class: pick distractors of another class")
    wrong = [i for i, p in enumerate(dpred.tolist()) if p != target]
    if wrong:
        raise InputError(f"distractors {wrong} are not classified as the target class {target} "
                         f"(predicted {[int(dpred[i]) for i in wrong]}); drop them")
    use_sem = semantic_weight > 0 or prefilter < 1
    u = None
    if use_sem:
        if aux is None:
            raise InputError("the pre-filter needs an auxiliary model: pass aux= or set prefilter=1")
        u = aux(images, tuple(feats.shape[-2:]))
    return counterfactual_from_features(
        split, feats[0], feats[1:], target, u[0] if u is not None else None, u[1:] if u is not None else None,
        image_size=tuple(query_image.shape[-2:]), query_id=query_id, distractor_ids=distractor_ids, method=method,
        semantic_weight=semantic_weight, temperature=temperature, prefilter=prefilter, max_edits=max_edits, path=path,
        chunk=chunk, aux_name=getattr(aux, "name", None), prefilter_by=prefilter_by, prefilter_rounding=prefilter_rounding,
        memory_mb=memory_mb,
    )


def counterfactual_from_features(
    split: ModelSplit, query: torch.Tensor, distractors: torch.Tensor, target: int, aux_query: torch.Tensor | None,
    aux_distractors: torch.Tensor | None, *, image_size: tuple[int, int], query_id: int | None = None,
    distractor_ids: list[int] | None = None, method: str = "scc", semantic_weight: float = 0.4, temperature: float = 0.1,
    prefilter: float = 0.1, max_edits: int | None = None, path: Literal["auto", "closed_form", "first_linear", "local", "generic"] = "auto",
    chunk: int | None = None, aux_name: str | None = None, prefilter_by: Literal["cosine", "log_softmax"] = "cosine",
    prefilter_rounding: Literal["floor", "ceil"] = "floor", memory_mb: float = 1024.0,
) -> Counterfactual:
    """The search on precomputed features: f(I) `[d, h, w]`, f(I') `[n, d, h, w]` and, when the semantic
    term or the pre-filter is on, u(I) `[d', h, w]` and u(I') `[n, d', h, w]` on the same grid."""
    use_sem = semantic_weight > 0 or prefilter < 1
    log_sem = None
    if use_sem:
        if aux_query is None or aux_distractors is None:
            raise InputError("the semantic term and the pre-filter need auxiliary features")
        cos = semantic_cosine(aux_query, aux_distractors)
        log_sem = torch.log_softmax(cos / temperature, dim=1)
    res = search_counterfactual(
        query, distractors, split.g, target, log_semantic=log_sem, semantic_weight=semantic_weight if use_sem else 0.0,
        prefilter=prefilter, max_edits=max_edits, linear_head=split.linear_head,
        first_linear=split.first_linear(tuple(query.shape)), path=path, chunk=chunk, memory_mb=memory_mb,
        local_tail=split.local_tail() if path in ("auto", "local") else None,
        prefilter_key=cos if use_sem and prefilter_by == "cosine" else None, prefilter_rounding=prefilter_rounding,
    )
    return Counterfactual(
        method=method, query_id=query_id, prediction=res.query_class, query_class=res.query_class, target_class=target,
        edits=res.edits, success=res.success, reason=res.reason, grid=res.grid, image_size=image_size,
        n_distractors=res.n_distractors, distractor_ids=distractor_ids, prob_target=res.prob_target,
        candidates=res.candidates, seconds=res.seconds, path=res.path,
        meta={"semantic_weight": semantic_weight, "temperature": temperature, "prefilter": prefilter,
              "prefilter_by": prefilter_by, "prefilter_rounding": prefilter_rounding,
              "layer": split.layer, "aux": aux_name},
    )


def edited_features(split: ModelSplit, query_image: torch.Tensor, distractor_images: torch.Tensor, cf: Counterfactual) -> torch.Tensor:
    """f(I*) `[d, h, w]` recomputed from the images and the edit list (to re-check a counterfactual)."""
    feats = split.features(torch.cat([query_image[None], distractor_images[:cf.n_distractors]]))
    return apply_edits(feats[0], feats[1:], cf.edits)
