"""CGC's loss: contrastive consistency of gradient x activation maps across a crop/flip.

Per image b: ``t_b`` = the model's top-1 on the orig view (no labels, no gradient); ``M_orig`` and
``M_aug`` = ReLU(sum_c dy_t/dA_c * A_c) on the orig and aug views at the configured layer, built
with double backprop so the loss trains through both; both upsampled (bilinear) to the view size and
normalised ``M / (sum M + 1e-8) + 1e-8``; ``T(M_orig)`` = the orig map cropped, resized and flipped
with the aug view's box and flip (one batched ``grid_sample``). Then both are flattened and
L2-normalised, and row b of the InfoNCE is ``[cos(aug_b, T(orig_b)), cos(aug_b, aug_k) for k != b] / t``
with target 0 (negatives: the other images' aug maps, same class or not). ``negatives=False`` is the
ablation without negatives: MSE between the two normalised maps.

`CGCLoss` returns the logits of both views and the consistency term, so a training loop adds its own
CE terms; `paper_total` gives the paper's ``CE(train) + CE(orig) + CE(aug) + lambda * L_CGC``.
Depends on torch, the core and this plugin's views and heatmaps.
"""
from __future__ import annotations


import torch
import torch.nn.functional as F
from pydantic import ConfigDict, Field
from torch import nn

from xcorr_core.components import StrictConfig
from xcorr_core.errors import InputError
from xcorr_core.results import Tensor, TensorModel
from xcorr_core.validation import check_tensor

from .heatmaps import layer_maps, normalise_mass, upsample
from .views import transform_maps

__all__ = ["CGCConfig", "CGCOutput", "CGCLoss", "info_nce", "paper_total"]


class CGCConfig(StrictConfig):
    """Configuration of `CGCLoss` (defaults: the authors' README runs)."""

    layer: str = Field("layer4", description="dotted name of the pre-pooling layer whose map is explained (ResNet: layer4)")
    temperature: float = Field(0.5, gt=0.0, description="InfoNCE temperature t")
    lam: float = Field(0.5, ge=0.0, description="weight lambda of the consistency term in `paper_total`")
    negatives: bool = Field(True, description="False: the ablation without negatives (MSE between the normalised maps)")
    eps: float = Field(1e-8, gt=0.0, description="mass-normalisation epsilon")


class CGCOutput(TensorModel):
    """What one `CGCLoss` call returns.

    Attributes:
        loss: the consistency term (scalar, differentiable).
        logits_orig: `[B, K]` outputs on the orig view (differentiable; for CE(orig)).
        logits_aug: `[B, K]` outputs on the aug view (differentiable; for CE(aug)).
        targets: `[B]` the orig view's top-1 classes the maps explain.
        heat_orig: `[B, S, S]` the transformed orig maps T(M_orig) (normalised, differentiable).
        heat_aug: `[B, S, S]` the aug maps (normalised, differentiable).
        positive: `[B]` cos(aug_b, T(orig_b)), detached (the consistency the loss raises).
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)
    loss: Tensor
    logits_orig: Tensor
    logits_aug: Tensor
    targets: Tensor
    heat_orig: Tensor
    heat_aug: Tensor
    positive: Tensor


def info_nce(anchor: torch.Tensor, positive: torch.Tensor, temperature: float) -> torch.Tensor:
    """Mean InfoNCE over rows: row b scores ``[cos(a_b, p_b), cos(a_b, a_k) for k != b] / t``, target 0.

    Args:
        anchor: `[B, D]` L2-normalised aug maps.
        positive: `[B, D]` L2-normalised transformed orig maps.
    """
    check_tensor("anchor", anchor, ndim=2, floating=True, finite=True, non_empty=True)
    check_tensor("positive", positive, shape=tuple(anchor.shape), floating=True, finite=True)
    b = anchor.shape[0]
    pos = (anchor * positive).sum(1, keepdim=True)
    sim = anchor @ anchor.T
    off = ~torch.eye(b, dtype=torch.bool, device=anchor.device)
    neg = sim[off].view(b, b - 1)  # row b keeps k != b in order
    logits = torch.cat([pos, neg], dim=1) / temperature
    if not bool(torch.isfinite(logits).all()):
        raise InputError("InfoNCE logits overflow: anchor and positive must be L2-normalised rows (norm 1)")
    return F.cross_entropy(logits, torch.zeros(b, dtype=torch.long, device=anchor.device))


class CGCLoss(nn.Module):
    """The CGC consistency term for any CNN whose pre-pooling layer is named in the config.

    Call with ``(model, orig, aug, boxes, flips)``: ``orig`` and ``aug`` `[B, 3, S, S]` (B >= 2 when
    ``negatives``), ``boxes`` `[B, 4]` the aug crop ``(i, j, h, w)`` in orig pixels, ``flips`` `[B]`.
    Works in train or eval mode (the model's own) and on the device of its inputs.

    Example:
        >>> crit = CGCLoss(CGCConfig(layer="layer4"))
        >>> out = crit(model, batch.orig, batch.aug, batch.boxes, batch.flips)
        >>> loss = paper_total(model(batch.train), out, labels, lam=0.5)
    """

    def __init__(self, config: CGCConfig | None = None, **overrides: object) -> None:
        super().__init__()
        self.config = CGCConfig(**{**(config or CGCConfig()).model_dump(), **overrides})

    def heatmaps(self, model: nn.Module, images: torch.Tensor, targets: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Normalised, differentiable gradient x activation maps `[B, S, S]`, logits and targets."""
        lm = layer_maps(model, images, self.config.layer, targets, kind="gradxact", create_graph=True)
        heat = normalise_mass(upsample(lm.maps, tuple(images.shape[-2:])), self.config.eps)
        return heat, lm.logits, lm.targets

    def forward(self, model: nn.Module, orig: torch.Tensor, aug: torch.Tensor, boxes: torch.Tensor, flips: torch.Tensor) -> CGCOutput:
        c = self.config
        check_tensor("orig", orig, ndim=4, floating=True, non_empty=True)
        check_tensor("aug", aug, shape=tuple(orig.shape), floating=True)
        b = orig.shape[0]
        if c.negatives and b < 2:
            raise InputError(f"CGC's InfoNCE needs a batch of at least 2 images (the negatives are the other images), got {b}")
        heat_o, logits_o, t = self.heatmaps(model, orig, None)
        heat_a, logits_a, _ = self.heatmaps(model, aug, t)
        heat_t = transform_maps(heat_o, boxes.to(orig.device), torch.as_tensor(flips, device=orig.device), tuple(aug.shape[-2:]))
        za = F.normalize(heat_a.flatten(1), dim=1)
        zo = F.normalize(heat_t.flatten(1), dim=1)
        loss = info_nce(za, zo, c.temperature) if c.negatives else F.mse_loss(za, zo)
        return CGCOutput(loss=loss, logits_orig=logits_o, logits_aug=logits_a, targets=t, heat_orig=heat_t, heat_aug=heat_a,
                         positive=(za * zo).sum(1).detach())


def paper_total(logits_train: torch.Tensor, out: CGCOutput, labels: torch.Tensor, lam: float = 0.5, *,
                label_smoothing: float = 0.0) -> torch.Tensor:
    """``CE(train) + CE(orig) + CE(aug) + lam * L_CGC`` (the paper's total; lam 0.5 in the authors' runs)."""
    ce = lambda z: F.cross_entropy(z, labels, label_smoothing=label_smoothing)  # noqa: E731
    return ce(logits_train) + ce(out.logits_orig) + ce(out.logits_aug) + lam * out.loss
