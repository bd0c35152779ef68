"""The plugin's components: the ``protoknn`` explainer, the metric ``protoknn_accuracy`` and the statistics
``prototype_variance`` and ``prototype_part_purity`` (one value per model: a pipeline spec refuses them)."""
from __future__ import annotations

from typing import Any, ClassVar

import torch
from pydantic import Field

import xcorr_core as xc
from xcorr_core.stats import wilson_interval
from xcorr_core.knn import majority_vote
from xcorr_core.validation import check_tensor

from .explain import ProtoKNNExplanation, explain_profile
from .knn import ProtoKNNClassifier
from .model import ProtoKNNNet
from .projection import ProjectionResult, encode
from .prototypes import prototype_variance

__all__ = ["ProtoKNNExplainer", "ProtoKNNAccuracy", "PrototypeVariance", "PrototypePartPurity", "ProtoKNNSetup"]


class ProtoKNNSetup:
    """A ProtoKNN model with its gallery: the classifier over training profiles and each
    training image's per-prototype peak cells (what explanations show)."""

    def __init__(self, model: ProtoKNNNet, images: torch.Tensor, labels: torch.Tensor, projection: ProjectionResult) -> None:
        self.model, self.projection = model.eval(), projection
        profiles, self.cells, self.grid = encode(model, images)
        self.classifier = ProtoKNNClassifier(profiles, labels)

    @classmethod
    def shipped(cls) -> "ProtoKNNSetup":
        """The shipped model with its gallery, SynthBirds train (seed 0, 30 per class)."""
        from xcorr_core.data import SynthBirds

        from .pretrained import load_model, shipped_path

        model, proj = load_model(shipped_path())
        if proj is None:
            raise xc.InputError("the shipped ProtoKNN file has no projection record")
        data = SynthBirds("train")
        return cls(model, data.images, data.labels, proj)

    def explain(self, image: torch.Tensor, *, k: int = 1, contrast: int | None = None, top: int = 3,
                query_id: int | None = None) -> ProtoKNNExplanation:
        """Classify ``image`` `[3, H, W]` by its k nearest training profiles and explain the decision."""
        check_tensor("image", image, ndim=3, floating=True, finite=True)
        profiles, cells, _ = encode(self.model, image[None])
        pred = int(self.classifier.predict(profiles, k).predictions[0])
        return explain_profile(profiles[0], cells[0], self.classifier, self.cells, self.projection, pred, contrast=contrast, top=top,
                               query_id=query_id)


class ProtoKNNExplainer(xc.Explainer):
    """"This looks like it rather than that": the query's nearest training neighbour p of the
    predicted class and nearest neighbour n of a contrast class, and the prototypes whose
    contributions (s_a - s_n)^2 - (s_a - s_p)^2 most favour p, with their source patches.

    Explains the ProtoKNN model's own decision (kNN over profiles) for the case's image. By
    default the shipped model and gallery; ``explainer.setup = ProtoKNNSetup(...)`` for yours."""

    name = "protoknn"
    summary = "ProtoKNN: this looks like it (nearest of the predicted class) rather than that (nearest of a contrast class)"
    requires: ClassVar[frozenset[str]] = frozenset({"image"})

    class Config(xc.StrictConfig):
        k: int = Field(1, ge=1, description="neighbours that vote (paper's explanations: 1)")
        top: int = Field(3, ge=1, description="prototypes shown (paper: 3)")
        contrast: int | None = Field(None, ge=0, description="contrast class (None: the class of the nearest other-class neighbour)")

    setup: ProtoKNNSetup | None = None

    def explain(self, case: xc.Case) -> ProtoKNNExplanation:
        if case.image is None:
            raise xc.InputError("the protoknn explainer needs the case's image")
        if self.setup is None:
            self.setup = ProtoKNNSetup.shipped()
        c = self.config
        return self.setup.explain(case.image, k=c.k, contrast=c.contrast, top=c.top, query_id=case.query_id)


class ProtoKNNAccuracy(xc.Metric):
    """Top-1 accuracy of the majority vote over the first k neighbours, for each k in ``ks``
    (within the neighbours given); value = the first k's accuracy, Wilson interval."""

    name = "protoknn_accuracy"
    summary = "Accuracy of the k-NN vote for k = 1, 3, 5, 10 (ProtoKNN's table), from the ranked neighbours"
    requires: ClassVar[frozenset[str]] = frozenset({"neighbour_labels", "targets"})

    class Config(xc.StrictConfig):
        ks: list[int] = Field(default_factory=lambda: [1, 3, 5, 10], min_length=1, description="k values")

    def compute(self, **data: Any) -> xc.MetricResult:
        labels = check_tensor("neighbour_labels", data.get("neighbour_labels"), ndim=2, floating=False, non_empty=True)
        targets = check_tensor("targets", data.get("targets"), shape=[labels.shape[0]], floating=False)
        ks = [k for k in self.config.ks if k <= labels.shape[1]]
        if not ks or any(k < 1 for k in self.config.ks):
            raise xc.InputError(f"ks {self.config.ks} need 1 <= k <= the {labels.shape[1]} neighbours given")
        nc = int(max(int(labels.max()), int(targets.max()))) + 1
        acc, first = {}, None
        for k in ks:
            pred, _ = majority_vote(labels[:, :k], nc)
            ok = pred == targets
            acc[f"k={k}"] = float(ok.float().mean())
            first = ok if first is None else first
        hits = int(first.sum())  # type: ignore[union-attr]
        return xc.MetricResult(name=self.name, value=acc[f"k={ks[0]}"], per_sample=first.float(), n=labels.shape[0],  # type: ignore[union-attr]
                               ci=wilson_interval(hits, labels.shape[0]), ci_level=0.95, details=acc)


class PrototypeVariance(xc.Statistic):
    """1 - |mean of the unit prototypes| (the paper's appendix D): near 1 when spread over the sphere."""

    name = "prototype_variance"
    summary = "Prototype variance on the hypersphere: 1 - |mean_i p_i|"
    requires: ClassVar[frozenset[str]] = frozenset({"prototypes"})

    def compute(self, **data: Any) -> xc.MetricResult:
        p = check_tensor("prototypes", data.get("prototypes"), ndim=2, floating=True, finite=True, non_empty=True)
        return xc.MetricResult(name=self.name, value=prototype_variance(p), n=p.shape[0])


class PrototypePartPurity(xc.Statistic):
    """How consistently each prototype fires on one annotated part: over its ``top`` most activated
    images, the share of peak cells whose part (the visible keypoint nearest the cell centre,
    inside the cell) is the most common one; a cell with no visible keypoint (background, or a
    stretch of the bird between keypoints) never counts as pure. Mean over prototypes; an analogue
    of prototype-network consistency scores. ``details["background_share"]``: the share of top
    activations in cells with no visible keypoint."""

    name = "prototype_part_purity"
    summary = "Share of a prototype's top activations that fall on the same annotated part (mean over prototypes)"
    requires: ClassVar[frozenset[str]] = frozenset({"profiles", "peak_cells", "keypoints", "image_size", "grid"})

    class Config(xc.StrictConfig):
        top: int = Field(10, ge=1, description="activations per prototype")
        count_background: bool = Field(False, description="count 'background' as a part (default: it never makes a prototype pure)")

    def compute(self, **data: Any) -> xc.MetricResult:
        prof = check_tensor("profiles", data.get("profiles"), ndim=2, floating=True, non_empty=True)
        cells = check_tensor("peak_cells", data.get("peak_cells"), shape=list(prof.shape), floating=False)
        kps = check_tensor("keypoints", data.get("keypoints"), ndim=3)
        if kps.shape[0] != prof.shape[0] or kps.shape[2] != 3:
            raise xc.InputError(f"keypoints must be [{prof.shape[0]}, P, 3], got {list(kps.shape)}")
        (H, W), (h, w) = data["image_size"], data["grid"]
        t = min(self.config.top, prof.shape[0])
        top = prof.topk(t, dim=0).indices  # [t, M] image ids
        cell = cells.gather(0, top)  # [t, M]
        cy, cx = (cell // w).float(), (cell % w).float()
        centre = torch.stack([(cx + 0.5) * W / w, (cy + 0.5) * H / h], -1)  # [t, M, 2]
        k = kps[top]  # [t, M, P, 3]
        kcol, krow = (k[..., 0] * w / W).floor(), (k[..., 1] * h / H).floor()
        inside = (k[..., 2] > 0) & (kcol == cx[..., None]) & (krow == cy[..., None])
        d = torch.where(inside, (k[..., :2] - centre[..., None, :]).norm(dim=-1), torch.full_like(k[..., 0], float("inf")))
        part = torch.where(inside.any(-1), d.argmin(-1), torch.full_like(cell, kps.shape[1]))  # P = background
        counts = torch.nn.functional.one_hot(part, kps.shape[1] + 1).sum(0)  # [M, P + 1]
        if not self.config.count_background:
            counts[:, -1] = 0
        purity = counts.amax(1).float() / t
        return xc.MetricResult(name=self.name, value=float(purity.mean()), per_sample=purity, n=prof.shape[1],
                               details={"background_share": float((part == kps.shape[1]).float().mean())})
