"""PAIR-X explanations of a pair of images under a metric model (cosine of embeddings).

Fast path (`explain_pair`): one batched forward of both images with the LRP composite; one
backward from the embeddings (seeded with d cos / d embedding, in closed form) to layer l
gives both images' cell relevance; mutual-NN matches on the raw layer-l activations are
scored by the product of their cells' relevances and the top n kept; then all 2n per-match
pixel maps come from batched vector-Jacobian products from layer l to the input (LRP's
backward is linear in the relevance it starts from once the forward is fixed, so one
forward serves every match; ``is_grads_batched`` runs them as one vmapped backward, in
chunks). `explain_pair_sequential` is the authors' algorithm (separate forwards per stage,
a loop of retained backward passes), kept as the reference for tests and benchmarks.
"""
from __future__ import annotations

import time
from typing import Any, ClassVar

import torch
from pydantic import Field
from torch import nn

import xcorr_core as xc
from xcorr_core.matching import mutual_nearest_neighbours
from xcorr_core.validation import check_tensor

from .conservative import ConservativePropagation, constant_norm_seed
from .lrp import captured_forward, cosine_seed, default_composite, supports_cached

__all__ = ["PairXExplanation", "explain_pair", "explain_pairs", "explain_pair_sequential", "PairXExplainer"]


class PairXExplanation(xc.Explanation):
    """A PAIR-X explanation of images a and b.

    Attributes:
        similarity: cosine similarity of the two embeddings.
        layer: the intermediate layer; grid: its `(h, w)`; image_size: `(H, W)`.
        all_matches: long `[M, 2]` every mutual-NN match (cell of a, cell of b).
        matches: long `[n, 2]` the top-n matches by relevance product, best first.
        match_scores: `[n]` their relevance products.
        relevance_a, relevance_b: `[h, w]` |sum over channels| of the layer relevance.
        pixel_maps_a, pixel_maps_b: `[n, H, W]` per-match input relevance |sum over colours|.
        keypoints_a, keypoints_b: `[n, 2]` pixel (x, y) of the matched cell centres.
        timings: seconds per stage.
    """

    similarity: float
    layer: str
    grid: tuple[int, int]
    image_size: tuple[int, int]
    all_matches: xc.Tensor
    matches: xc.Tensor
    match_scores: xc.Tensor
    relevance_a: xc.Tensor
    relevance_b: xc.Tensor
    pixel_maps_a: xc.Tensor
    pixel_maps_b: xc.Tensor
    keypoints_a: xc.Tensor
    keypoints_b: xc.Tensor
    timings: dict[str, float] = Field(default_factory=dict)

    def cell_to_pixels(self, cells: torch.Tensor) -> torch.Tensor:
        """Cell indices `[k]` -> pixel (x, y) of the cell centres `[k, 2]`."""
        h, w = self.grid
        H, W = self.image_size
        r, c = cells // w, cells % w
        return torch.stack([(c.double() + 0.5) * W / w, (r.double() + 0.5) * H / h], dim=1)

    def plot(self, images: Any = None, ax: Any = None, image_a: torch.Tensor | None = None, image_b: torch.Tensor | None = None) -> Any:
        """The PAIR-X figure (see `xcorr_pairx.figure.plot_pairx`)."""
        from .figure import plot_pairx

        if image_a is None and images is not None:
            image_a, image_b = images
        return plot_pairx(self, image_a, image_b)


def _check_images(a: torch.Tensor, b: torch.Tensor) -> None:
    check_tensor("image_a", a, ndim=3, floating=True, finite=True, non_empty=True)
    check_tensor("image_b", b, ndim=3, floating=True, finite=True, non_empty=True)
    if a.shape != b.shape:
        raise xc.InputError(f"images must have the same shape, got {list(a.shape)} and {list(b.shape)}")


def _masks(acts: torch.Tensor, pairs: torch.Tensor, ones: bool = False) -> torch.Tensor:
    """Grad outputs `[n, 2, C, h, w]`: zero but the matched cell of each image, which holds its
    activation (LRP: the cell's relevance) or ones (gradient x input: relevance / activation)."""
    n = pairs.shape[0]
    _, C, h, w = acts.shape
    G = acts.new_zeros(n, 2, C, h * w)
    k = torch.arange(n, device=acts.device)
    src = torch.ones_like(acts) if ones else acts
    G[k, 0, :, pairs[:, 0]] = src[0].flatten(1).T[pairs[:, 0]]
    G[k, 1, :, pairs[:, 1]] = src[1].flatten(1).T[pairs[:, 1]]
    return G.view(n, 2, C, h, w)


def _rules(composite: Any) -> tuple[Any, bool]:
    """(seed function, gradient x input?) of a composite: LRP seeds relevance with d cos / d embedding;
    conservative propagation seeds with the constant-norm gradient and multiplies by the activations."""
    gi = isinstance(composite, ConservativePropagation)
    return (constant_norm_seed if gi else cosine_seed), gi


def _select(acts: torch.Tensor, rel: torch.Tensor, n: int, metric: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    all_pairs, _ = mutual_nearest_neighbours(acts[0].detach(), acts[1].detach(), metric)  # type: ignore[arg-type]
    cell = rel.abs() if rel.ndim == 3 else rel
    ra, rb = cell[0].flatten(), cell[1].flatten()
    score = ra[all_pairs[:, 0]] * rb[all_pairs[:, 1]]
    top = torch.argsort(score, descending=True, stable=True)[:n]
    return all_pairs, all_pairs[top], score[top]


def _composite_and_engine(model: nn.Module, composite: Any | None, engine: str) -> tuple[Any, str]:
    """The composite (default: `default_composite`) and the engine (``"auto"``: cached when its rules allow)."""
    composite = composite if composite is not None else default_composite(model)
    if isinstance(composite, ConservativePropagation):
        return composite, composite.engine
    if engine == "auto":
        engine = "cached" if supports_cached(model, composite) else "zennit"
    return composite, engine


def _embedding(out: Any) -> torch.Tensor:
    """The embedding `[B, D]` a model returns (a tensor, or a Hugging Face output's ``image_embeds`` /
    ``pooler_output``: `xcorr_core.layouts.model_output`)."""
    from xcorr_core.layouts import model_output

    emb = model_output(out)
    if emb is None or emb.ndim != 2:
        raise xc.InputError(f"PAIR-X explains a model that maps images to embeddings [B, D]; this one returns "
                            f"{list(emb.shape) if emb is not None else type(out).__name__}: wrap it so it returns the pooled "
                            "embedding (e.g. a CLS token, or num_classes=0 for timm)")
    return emb


def _finish(model_out: dict, image_size: tuple[int, int], layer: str, grid: tuple[int, int]) -> PairXExplanation:
    exp = PairXExplanation(method="pairx", layer=layer, grid=grid, image_size=image_size,
                           keypoints_a=torch.zeros(0, 2), keypoints_b=torch.zeros(0, 2), **model_out)
    exp.keypoints_a = exp.cell_to_pixels(exp.matches[:, 0])
    exp.keypoints_b = exp.cell_to_pixels(exp.matches[:, 1])
    return exp


def explain_pair(model: nn.Module, image_a: torch.Tensor, image_b: torch.Tensor, *, layer: str = "layer3", n: int = 20,
                 composite: Any | None = None, metric: str = "l2", chunk: int = 5, pixel_maps: bool = True,
                 engine: str = "auto") -> PairXExplanation:
    """PAIR-X for one pair (fast path). Images `[3, H, W]` in the model's input space; the model
    maps images to embeddings and must be in eval mode; it is not modified and no hook survives.
    ``pixel_maps=False`` skips the per-match maps (the metrics need only matches and relevance).
    ``engine``: ``"cached"`` (zennit's rules, modified forwards built once: `lrp.cached_lrp`),
    ``"zennit"`` (zennit's hooks) or ``"auto"`` (cached when the composite's rules allow it)."""
    _check_images(image_a, image_b)
    composite, engine = _composite_and_engine(model, composite, engine)
    seed, gi = _rules(composite)
    t = {}
    t0 = time.perf_counter()
    with captured_forward(model, layer, composite, engine) as (m, store):
        x = torch.stack([image_a, image_b]).detach().requires_grad_(True)
        with torch.enable_grad():
            emb = _embedding(m(x))
            acts = store["a"]
            t["forward"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            cos, sa, sb = seed(emb[0].detach(), emb[1].detach())
            rel = torch.autograd.grad(emb, acts, grad_outputs=torch.stack([sa, sb]), retain_graph=True)[0]
            if gi:
                rel = rel * acts.detach()
            cell_rel = rel.sum(1).abs()  # [2, h, w]
            t["layer_relevance"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            all_pairs, pairs, scores = _select(acts, cell_rel, n, metric)
            t["matching"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            G = _masks(acts.detach(), pairs, ones=gi)
            maps = []
            for s in range(0, pairs.shape[0] if pixel_maps else 0, max(1, chunk)):
                g = torch.autograd.grad(acts, x, grad_outputs=G[s:s + chunk], is_grads_batched=True, retain_graph=True)[0]
                if gi:
                    g = g * x.detach()
                maps.append(g.sum(2).abs())  # [c, 2, H, W]
            pm = torch.cat(maps) if maps else image_a.new_zeros(0, 2, *image_a.shape[1:])
            t["pixel_maps"] = time.perf_counter() - t0
    h, w = acts.shape[-2:]
    exp = _finish({"similarity": float(cos), "all_matches": all_pairs, "matches": pairs, "match_scores": scores.detach(),
                   "relevance_a": cell_rel[0].detach(), "relevance_b": cell_rel[1].detach(),
                   "pixel_maps_a": pm[:, 0].detach(), "pixel_maps_b": pm[:, 1].detach(), "timings": t},
                  tuple(image_a.shape[1:]), layer, (h, w))
    exp.meta["lrp_engine"] = engine
    return exp


def explain_pairs(model: nn.Module, images_a: torch.Tensor, images_b: torch.Tensor, *, layer: str = "layer3", n: int = 20,
                  composite: Any | None = None, metric: str = "l2", engine: str = "auto", batch: int = 8) -> list[PairXExplanation]:
    """PAIR-X matches and layer relevance (no pixel maps) of P pairs `[P, 3, H, W]` each, ``batch``
    pairs per forward and backward — what a study of many pairs needs (`study.evaluate_pairs`).

    Each pair's relevance is its own rows of one batched LRP backward (every image's relevance
    depends only on its own seed), so similarities and matches equal `explain_pair`'s and the
    relevance maps agree up to float summation order (the batched convolutions add in another
    order; measured within 7e-5 of a map's maximum on the shipped SynthHerd model, bit-identical
    at ``batch=1``); the per-pair call overhead (hooks, the cached engine's set-up) is paid once
    per batch. ``timings`` hold the batch's times divided by its pairs. For pixel maps, call
    `explain_pair` on the pairs to show.
    """
    check_tensor("images_a", images_a, ndim=4, floating=True, finite=True, non_empty=True)
    check_tensor("images_b", images_b, shape=list(images_a.shape), floating=True, finite=True)
    if batch < 1:
        raise xc.InputError(f"batch must be >= 1, got {batch}")
    composite, engine = _composite_and_engine(model, composite, engine)
    seed, gi = _rules(composite)
    out: list[PairXExplanation] = []
    with captured_forward(model, layer, composite, engine) as (m, store):
        for s in range(0, images_a.shape[0], batch):
            t: dict[str, float] = {}
            t0 = time.perf_counter()
            a, b = images_a[s:s + batch], images_b[s:s + batch]
            p = a.shape[0]
            x = torch.stack([a, b], 1).flatten(0, 1).detach().requires_grad_(True)  # [a0, b0, a1, b1, ...]
            with torch.enable_grad():
                emb = _embedding(m(x))
                acts = store["a"]
                t["forward"] = (time.perf_counter() - t0) / p
                t0 = time.perf_counter()
                seeds, sims = torch.zeros_like(emb), []
                for k in range(p):
                    cos, seeds[2 * k], seeds[2 * k + 1] = seed(emb[2 * k].detach(), emb[2 * k + 1].detach())
                    sims.append(float(cos))
                rel = torch.autograd.grad(emb, acts, grad_outputs=seeds)[0]
                if gi:
                    rel = rel * acts.detach()
            cell_rel = rel.sum(1).abs().detach()  # [2p, h, w]
            t["layer_relevance"] = (time.perf_counter() - t0) / p
            h, w = acts.shape[-2:]
            for k in range(p):
                t0 = time.perf_counter()
                pair_acts, pair_rel = acts[2 * k:2 * k + 2].detach(), cell_rel[2 * k:2 * k + 2]
                all_pairs, pairs, scores = _select(pair_acts, pair_rel, n, metric)
                tk = dict(t, matching=time.perf_counter() - t0, pixel_maps=0.0)
                empty = a.new_zeros(0, *a.shape[2:])
                exp = _finish({"similarity": sims[k], "all_matches": all_pairs, "matches": pairs, "match_scores": scores.detach(),
                               "relevance_a": pair_rel[0], "relevance_b": pair_rel[1], "pixel_maps_a": empty, "pixel_maps_b": empty,
                               "timings": tk}, tuple(a.shape[2:]), layer, (h, w))
                exp.meta["lrp_engine"] = engine
                out.append(exp)
    return out


def explain_pair_sequential(model: nn.Module, image_a: torch.Tensor, image_b: torch.Tensor, *, layer: str = "layer3", n: int = 20,
                            composite: Any | None = None, metric: str = "l2") -> PairXExplanation:
    """The authors' algorithm as they run it: a plain forward per image for matching, a forward
    and a full LRP backward per image for the layer relevance, then per image a third forward
    followed by a loop of n retained backward passes from layer l to the input, with zennit's hooks."""
    _check_images(image_a, image_b)
    composite = composite if composite is not None else default_composite(model)
    seed, gi = _rules(composite)
    t = {}
    t0 = time.perf_counter()
    acts = []
    with captured_forward(model, layer, None) as (m, store), torch.no_grad():
        embs = []
        for img in (image_a, image_b):
            embs.append(_embedding(m(img[None]))[0])
            acts.append(store["a"][0])
    acts_t = torch.stack(acts)
    cos, sa, sb = seed(embs[0], embs[1])
    t["forward"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    rels = []
    for img, seed_v in ((image_a, sa), (image_b, sb)):
        with captured_forward(model, layer, composite, "zennit") as (m, store), torch.enable_grad():
            x = img[None].detach().requires_grad_(True)
            emb = _embedding(m(x))
            r = torch.autograd.grad(emb, store["a"], grad_outputs=seed_v[None])[0][0]
            rels.append(r * store["a"][0].detach() if gi else r)
    cell_rel = torch.stack([r.sum(0).abs() for r in rels])
    t["layer_relevance"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    all_pairs, pairs, scores = _select(acts_t, cell_rel, n, metric)
    t["matching"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    G = _masks(acts_t, pairs, ones=gi)
    maps = torch.zeros(pairs.shape[0], 2, *image_a.shape[1:])
    for side, img in enumerate((image_a, image_b)):
        with captured_forward(model, layer, composite, "zennit") as (m, store), torch.enable_grad():
            x = img[None].detach().requires_grad_(True)
            m(x)
            a = store["a"]
            for k in range(pairs.shape[0]):
                g = torch.autograd.grad(a, x, grad_outputs=G[k, side][None], retain_graph=True)[0][0]
                maps[k, side] = (g * x[0].detach() if gi else g).sum(0).abs()
    t["pixel_maps"] = time.perf_counter() - t0
    h, w = acts_t.shape[-2:]
    return _finish({"similarity": float(cos), "all_matches": all_pairs, "matches": pairs, "match_scores": scores,
                    "relevance_a": cell_rel[0], "relevance_b": cell_rel[1], "pixel_maps_a": maps[:, 0], "pixel_maps_b": maps[:, 1],
                    "timings": t}, tuple(image_a.shape[1:]), layer, (h, w))


class PairXExplainer(xc.Explainer):
    """PAIR-X for pairs of images under a metric model: ``explain_pair(model, image_a, image_b)``.

    In a pipeline it explains each selected query against the gallery image it was matched to
    (``Case.pair_image``: the best-ranked neighbour of the predicted class) under the pipeline's
    model; outside one, call `explain_pair` with your model and two images.
    """

    name = "pairx"
    summary = "PAIR-X: mutual-NN matches at a layer, filtered by LRP relevance, with per-match pixel maps"
    requires: ClassVar[frozenset[str]] = frozenset({"image", "pair_image", "model"})

    class Config(xc.StrictConfig):
        layer: str = Field("layer3", description="intermediate layer (dotted name)")
        n: int = Field(20, ge=1, description="matches kept (paper figures: 20)")
        metric: str = Field("l2", pattern="^(l2|cosine)$", description="matcher distance (PAIR-X: l2 on raw activations)")
        chunk: int = Field(5, ge=1, description="per-match backward passes vmapped together (5 was fastest on a 2-core CPU; bounds memory)")
        engine: str = Field("auto", pattern="^(auto|cached|zennit)$", description="LRP engine: cached (zennit's rules, modified forwards built once) or zennit's hooks")

    def explain_pair(self, model: nn.Module, image_a: torch.Tensor, image_b: torch.Tensor, composite: Any | None = None) -> PairXExplanation:
        c = self.config
        return explain_pair(model, image_a, image_b, layer=c.layer, n=c.n, composite=composite, metric=c.metric, chunk=c.chunk,
                            engine=c.engine)

    def explain(self, case: xc.Case) -> PairXExplanation:
        """In a pipeline: the query (image a) against ``case.pair_image`` (image b), the best-ranked
        gallery neighbour of the predicted class, under ``case.model``."""
        if case.model is None or case.image is None or case.pair_image is None:
            raise xc.InputError("pairx explains a pair of images under a model: a case with model, image and pair_image "
                                "(a pipeline fills them), or call explain_pair(model, image_a, image_b)")
        exp = self.explain_pair(case.model, case.image, case.pair_image)
        exp.query_id, exp.prediction, exp.confidence = case.query_id, case.prediction, case.confidence
        exp.meta = {**exp.meta, "pair_id": case.pair_id, "decided_by": case.method}
        return exp
