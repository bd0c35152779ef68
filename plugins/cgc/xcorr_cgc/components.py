"""The components the cgc plugin registers: explainers ``gradcam`` and ``gradxact``; metrics
``content_heatmap``, ``insertion_auc``, ``deletion_auc`` and ``explanation_consistency``.

Explainers work on any classifier and layer: ``explain_images(model, images, targets)`` for a batch,
or ``explain(case)`` in a pipeline when the config names a model (shipped, plugin-registered or a
checkpoint). Metrics take tensors through ``compute(...)`` (maps from these explainers, captum,
zennit or anything else). Depends on torch, the core and this plugin.
"""
from __future__ import annotations

from typing import Any, ClassVar, Literal

import torch
from pydantic import Field
from torch import nn

import xcorr_core as xc
from xcorr_core.results import Tensor
from xcorr_core.stats import normal_interval
from xcorr_core.validation import check_tensor

from .attribution import consistency, content_heatmap, insertion_deletion
from .heatmaps import MapKind, captum_map, layer_maps, upsample

__all__ = ["HeatmapExplanation", "GradCAMExplainer", "GradXActExplainer", "ContentHeatmap", "InsertionAUC", "DeletionAUC", "ViewConsistency",
           "ExplanationConsistency", "mean_interval"]


class HeatmapExplanation(xc.Explanation):
    """Pixel maps of a batch of images (one image in a pipeline).

    Attributes:
        maps: `[B, H, W]` maps at the images' resolution (bilinear upsampling of ``layer_maps``).
        layer_maps: `[B, h, w]` the maps at the layer.
        targets: `[B]` the classes explained.
        layer: the layer's dotted name.
    """

    maps: Tensor
    layer_maps: Tensor
    targets: Tensor
    layer: str

    def plot(self, images: torch.Tensor | None = None, ax: Any = None, class_names: list[str] | None = None) -> Any:
        """Each image `[B, 3, H, W]` (in [0, 1]) with its map blended on top."""
        from .figure import plot_heatmaps

        return plot_heatmaps(images, {self.method: self.maps}, targets=self.targets, class_names=class_names)


class _MapExplainer(xc.Explainer):
    kind: ClassVar[MapKind]
    requires: ClassVar[frozenset[str]] = frozenset({"image"})

    class Config(xc.StrictConfig):
        layer: str = Field("layer4", description="dotted name of the conv layer explained (the map before global pooling)")
        model: str | None = Field(None, description="for explain(case): a shipped model ('birds'), a plugin model or a checkpoint "
                                                     "file; None: the pipeline's model (the case's)")
        target: Literal["model", "prediction", "target"] = Field(
            "model", description="class explained in a pipeline: the model's own top-1, the pipeline's prediction or the true label")
        engine: Literal["native", "captum"] = Field("native", description="native: one batched backward; captum: LayerGradCam / LayerGradientXActivation")
        batch_size: int = Field(64, ge=1, description="images per forward/backward in explain_images")

    def __init__(self, config: Any = None) -> None:
        super().__init__(config)
        self._model: nn.Module | None = None

    def explain_images(self, model: nn.Module, images: torch.Tensor, targets: torch.Tensor | int | None = None) -> HeatmapExplanation:
        """Maps of ``images`` `[B, 3, H, W]` for ``targets`` `[B]` (default: the model's top-1)."""
        c = self.config
        check_tensor("images", images, ndim=4, floating=True, non_empty=True)
        b = images.shape[0]
        tt = None if targets is None else torch.as_tensor(targets, device=images.device).long()
        if tt is not None:
            tt = check_tensor("targets", tt.expand(b) if tt.ndim == 0 else tt, shape=(b,))
        maps, layer_out, tgts = [], [], []
        for i in range(0, b, c.batch_size):
            x = images[i:i + c.batch_size]
            t = None if tt is None else tt[i:i + c.batch_size]
            if c.engine == "captum":
                if t is None:
                    with torch.no_grad():
                        t = model(x).argmax(1)
                m = captum_map(model, x, c.layer, t, kind=self.kind)
            else:
                lm = layer_maps(model, x, c.layer, t, kind=self.kind)
                m, t = lm.maps, lm.targets
            layer_out.append(m)
            maps.append(upsample(m, tuple(x.shape[-2:])))
            tgts.append(torch.as_tensor(t).long())
        return HeatmapExplanation(method=self.name, maps=torch.cat(maps), layer_maps=torch.cat(layer_out), targets=torch.cat(tgts),
                                  layer=c.layer)

    def _loaded_model(self) -> nn.Module:
        if self._model is None:
            if self.config.model is None:
                raise xc.InputError(f"{self.name}: set config.model to explain pipeline cases, or call explain_images(model, images)")
            from xcorr_core.models import load_model

            self._model = load_model(self.config.model).eval()
        return self._model

    def explain(self, case: xc.Case) -> HeatmapExplanation:
        # config.model when set; else the pipeline's own model, which the case carries
        model = case.model if self.config.model is None and case.model is not None else self._loaded_model()
        if case.image is None:
            raise xc.InputError(f"{self.name} needs the case's image")
        target = {"model": None, "prediction": case.prediction, "target": case.target}[self.config.target]
        if self.config.target != "model" and target is None:
            raise xc.InputError(f"{self.name}: config.target={self.config.target!r} but the case has none")
        exp = self.explain_images(model, case.image[None].float(), None if target is None else torch.tensor([target]))
        exp.query_id, exp.prediction = case.query_id, case.prediction
        return exp


class GradCAMExplainer(_MapExplainer):
    """Standard Grad-CAM: channel weights = spatial mean of the gradients, ReLU(sum_c w_c A_c)."""

    name = "gradcam"
    summary = "Grad-CAM at any conv layer of any classifier (pooled-gradient channel weights), batched"
    kind = "gradcam"


class GradXActExplainer(_MapExplainer):
    """CGC's training map: ReLU(sum_c dy/dA_c * A_c) per location (equal to Grad-CAM behind GAP + linear)."""

    name = "gradxact"
    summary = "CGC's gradient x activation map (the map the CGC loss trains) at any conv layer"
    kind = "gradxact"


def mean_interval(values: torch.Tensor, level: float = 0.95) -> tuple[float, tuple[float, float] | None, int]:
    """Mean of the finite ``values``, its normal-approximation interval and the count used
    (`xcorr_core.stats.normal_interval`)."""
    return normal_interval(values.double().flatten().tolist(), level)


_UNSCORABLE = {"content_heatmap": "every map has zero mass", "insertion_auc": "every map is constant (it ranks no pixel above another)",
               "deletion_auc": "every map is constant (it ranks no pixel above another)",
               "explanation_consistency": "every pair has an all-zero map"}


def _result(name: str, per: torch.Tensor, **details: Any) -> xc.MetricResult:
    """Mean and interval over the scorable samples; those that cannot be scored (NaN) are counted in ``details["left_out"]``."""
    m, ci, n = mean_interval(per)
    if n == 0:
        raise xc.InputError(f"{name}: no sample could be scored: {_UNSCORABLE.get(name, 'every value is NaN')}")
    return xc.MetricResult(name=name, value=m, per_sample=per.float(), n=n, ci=ci, ci_level=0.95 if ci else None,
                           details={"left_out": int(per.numel() - n), **details})


def _model(data: dict[str, Any], name: str) -> nn.Module:
    model = data.get("model")
    if not isinstance(model, nn.Module):
        raise xc.InputError(f"{name} needs model= (an nn.Module returning logits), got {type(model).__name__}")
    return model


class ContentHeatmap(xc.Metric):
    """Content Heatmap (%): mass of the normalised map inside the ground-truth boxes, x100.

    ``compute(maps=[B, H, W], boxes=[B, 4] (x0, y0, x1, y1) or a list of [n_b, 4])``; maps of zero mass
    get NaN per sample and are left out of the mean (``details["left_out"]``)."""

    name = "content_heatmap"
    summary = "Content Heatmap: % of a map's mass inside the ground-truth boxes (TorchRay's energy in box)"
    requires: ClassVar[frozenset[str]] = frozenset({"maps", "boxes"})

    def compute(self, **data: Any) -> xc.MetricResult:
        return _result(self.name, content_heatmap(data["maps"], data["boxes"]))


class _RiseAUC(xc.Metric):
    mode: ClassVar[Literal["insertion", "deletion"]]
    requires: ClassVar[frozenset[str]] = frozenset({"model", "images", "maps"})

    class Config(xc.StrictConfig):
        steps: int = Field(28, ge=1, description="steps of ceil(H*W/steps) pixels (the authors' 28: 224*8 px at 224)")
        batch_size: int = Field(8, ge=1, description="images per forward pass (all steps of all images, chunked); 8 was fastest on a 2-core CPU, raise it on a GPU")
        padding: Literal["zeros", "reflect"] = Field("zeros", description="blur substrate padding (the authors': zeros, of the normalised input)")
        eval_mode: bool = Field(True, description="run the model in eval mode (the authors' script used train mode: a quirk)")

    def compute(self, **data: Any) -> xc.MetricResult:
        from .attribution import blur

        c = self.config
        model = _model(data, self.name)
        images = check_tensor("images", data["images"], ndim=4, floating=True, non_empty=True, finite=True)
        sub = blur(images, padding=c.padding)
        auc, curves, classes = insertion_deletion(model, images, data["maps"], mode=self.mode, steps=c.steps, substrate=sub,
                                                  batch_size=c.batch_size, use_eval=c.eval_mode)
        return _result(self.name, auc, mean_curve=curves.mean(0).tolist(), classes=classes.tolist())


class InsertionAUC(_RiseAUC):
    """Insertion AUC (RISE): blurred image -> clean, most-attributed pixels first; higher is better.

    ``compute(model=, images=[B, 3, H, W], maps=[B, h, w])``; per-sample values are per image."""

    name = "insertion_auc"
    summary = "Insertion AUC (RISE protocol: blur substrate, 28 steps, clean top-1 probability), batched"
    mode = "insertion"


class DeletionAUC(_RiseAUC):
    """Deletion AUC (RISE): clean image -> blurred, most-attributed pixels first; lower is better."""

    name = "deletion_auc"
    summary = "Deletion AUC (RISE protocol, mirror of insertion), batched"
    mode = "deletion"


class ViewConsistency(xc.Metric):
    """Explanation consistency from a pipeline spec: each explained query's random resized crop
    (flipped with probability ``flip_p``), explained by the metric's own explainer (``explain``),
    against the query's map moved by the same crop and flip; the cosine per query, as
    `ExplanationConsistency` computes it for fixed views. The views are drawn from ``seed``; the
    images must be square (the views' side is theirs)."""

    name = "view_consistency"
    summary = "Explanation consistency in a pipeline: the explainer on a crop/flip view vs the query's map moved the same way"
    requires: ClassVar[frozenset[str]] = frozenset({"images", "maps", "explain"})

    class Config(xc.StrictConfig):
        scale: tuple[float, float] = Field((0.08, 1.0), description="RandomResizedCrop area fraction (the authors' recipe)")
        ratio: tuple[float, float] = Field((3 / 4, 4 / 3), description="RandomResizedCrop aspect ratio range")
        flip_p: float = Field(0.5, ge=0.0, le=1.0, description="probability of a horizontal flip")
        seed: int = Field(0, description="seed of the views")

    def compute(self, **data: Any) -> xc.MetricResult:
        from .views import ViewsConfig, make_views

        images = check_tensor("images", data.get("images"), ndim=4, floating=True, non_empty=True)
        maps = data.get("maps")
        if images.shape[-1] != images.shape[-2]:
            raise xc.InputError(f"view_consistency needs square images (the views' side is theirs), got {tuple(images.shape[-2:])}")
        c = self.config
        cfg = ViewsConfig(size=int(images.shape[-1]), resize_ratio=1.0, scale=c.scale, ratio=c.ratio, flip_p=c.flip_p)
        views = make_views(images, cfg, torch.Generator().manual_seed(c.seed))
        maps_aug = data["explain"](views.aug)
        per = consistency(maps_aug, maps, views.boxes, views.flips)
        return _result(self.name, per, seed=c.seed)


class ExplanationConsistency(xc.Metric):
    """Cosine between the aug view's map and the orig view's map moved by the same crop and flip.

    ``compute(maps_orig=[B, S, S], maps_aug=[B, S, S], boxes=[B, 4] (i, j, h, w) in orig pixels,
    flips=[B])`` — the quantity CGC's loss raises."""

    name = "explanation_consistency"
    summary = "Explanation consistency: cosine of aug-view map vs crop/flip-transformed orig map (what CGC trains)"
    requires: ClassVar[frozenset[str]] = frozenset({"maps_orig", "maps_aug", "boxes", "flips"})

    def compute(self, **data: Any) -> xc.MetricResult:
        per = consistency(data["maps_aug"], data["maps_orig"], data["boxes"], data["flips"])
        return _result(self.name, per)
