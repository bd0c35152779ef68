"""CHMNet (Min & Cho, CVPR 2021): convolutional Hough matching over backbone features.

``backbone features at one layer -> multi-scale 6D correlation (3 scales, a 3x3 conv per
scale shared by both images) -> CHM 6D -> sigmoid -> max over scale pairs -> x2 4D upsample
-> CHM 4D -> softplus -> mutual-NN filter`` gives a correlation between the cells of a
``2h x 2h`` grid on each image (h = the feature side), from which `transfer` moves points.

The backbone is any `nn.Module` with a layer name (siamese: one network for both images;
``two_stream=True`` copies it so the two streams can diverge in training), or a module with
``forward_pair(src, trg) -> (src_feat, trg_feat)`` such as the authors' two-stream ResNet-101
(`xcorr_chm_corr.authors`). Submodules are named as in the authors' code (``backbone``,
``learner.conv2ds``, ``learner.chm6d``, ``learner.chm4d``) so their state dicts map key for key.
Depends on torch, the core's feature extractor and this plugin's layers.
"""
from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import nn

from xcorr_core.errors import InputError
from xcorr_core.features import FeatureExtractor
from xcorr_core.models import check_model_images
from xcorr_core.validation import check_same_device, check_tensor

from .correlation import correlation6d, interpolate4d, mutual_nn_filter, scale_features
from .kernels import KernelType
from .layers import CHM4d, CHM6d
from .transfer import normalise_points, transfer_points, unnormalise_points

__all__ = ["CHMLearner", "CHMNet"]


class CHMLearner(nn.Module):
    """The CHM head on a pair of feature maps `[B, C, h, h]` -> correlation `[B, (2h)^2, (2h)^2]`.

    Args:
        feat_dim: C, channels of the backbone features.
        ktype: kernel sharing of both CHM layers ('psi', 'iso' or 'full').
        scales: the three feature scales of the 6D correlation (paper: 0.5, 1, 2).
        reduce: the scale convs map C -> C / reduce channels (authors: 4).
    """

    def __init__(self, feat_dim: int, ktype: KernelType = "psi", scales: Sequence[float] = (0.5, 1.0, 2.0),
                 reduce: int = 4) -> None:
        super().__init__()
        if len(scales) != 3:
            raise InputError(f"the 6D CHM kernel spans 3 scales; got {len(scales)} scales")
        self.scales = tuple(float(s) for s in scales)
        self.conv2ds = nn.ModuleList([nn.Conv2d(feat_dim, feat_dim // reduce, 3, padding=1, bias=False) for _ in self.scales])
        self.chm6d = CHM6d(5, ktype)
        self.chm4d = CHM4d(5, ktype, bias=True)

    def scale_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The unit scale features of maps `[B, C, h, h]` (`correlation.scale_features`), for ``trg_scales``."""
        return scale_features(x, self.scales, self.conv2ds)

    def forward(self, src: torch.Tensor, trg: torch.Tensor, trg_scales: list[torch.Tensor] | None = None) -> torch.Tensor:
        """CHM correlation `[B, (2h)^2, (2h)^2]` of feature maps ``src`` `[1 or B, C, h, h]` and ``trg`` `[B, C, h, h]`."""
        check_tensor("src", src, ndim=4, floating=True, finite=True, non_empty=True)
        check_tensor("trg", trg, ndim=4, floating=True, finite=True, non_empty=True)
        b, h = trg.shape[0], trg.shape[2]
        corr = self.chm6d(correlation6d(src, trg, self.scales, self.conv2ds, trg_scales))  # [B, 3, 3, h, h, h, h]
        corr = torch.sigmoid(corr).flatten(1, 2).amax(dim=1)  # max over the 9 scale pairs
        corr = torch.nn.functional.softplus(self.chm4d(interpolate4d(corr, 2 * h)))
        side = 2 * h
        return mutual_nn_filter(corr.reshape(b, side * side, side * side))


class CHMNet(nn.Module):
    """Backbone + CHM head.

    Args:
        backbone: feature network (images `[B, 3, H, W]` as it takes them), or a module with
            ``forward_pair``.
        layer: the backbone layer whose (square) map is matched; ignored with ``forward_pair``.
        feat_dim: channels at ``layer``.
        ktype: 'psi' (paper), 'iso' or 'full'.
        two_stream: give the target image its own copy of the backbone.
        sigma: Gaussian width of the transfer in cells (default 17 x side / 30).
        radius: keypoint attention radius in normalised units (default 0.1 x 29 / (side - 1)).
    """

    def __init__(self, backbone: nn.Module, layer: str | None, feat_dim: int, *, ktype: KernelType = "psi",
                 two_stream: bool = False, sigma: float | None = None, radius: float | None = None) -> None:
        super().__init__()
        self.backbone = backbone
        self.layer, self.feat_dim, self.ktype = layer, feat_dim, ktype
        self.paired = callable(getattr(backbone, "forward_pair", None))
        if not self.paired and not layer:
            raise InputError("CHMNet needs the name of the backbone layer to match (or a backbone with forward_pair)")
        self.backbone_trg = copy.deepcopy(backbone) if two_stream and not self.paired else None
        self.learner = CHMLearner(feat_dim, ktype)
        self.sigma, self.radius = sigma, radius
        self._fx: dict[int, FeatureExtractor] = {}

    # -- features ------------------------------------------------------------------------
    def _extract(self, net: nn.Module, images: torch.Tensor) -> torch.Tensor:
        fx = self._fx.get(id(net))
        if fx is None:
            fx = self._fx[id(net)] = FeatureExtractor(net, [self.layer], grad=True)  # type: ignore[list-item]
        return fx(images).maps[self.layer]  # type: ignore[index]

    def features(self, src: torch.Tensor, trg: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Backbone maps `[B, C, h, h]` of both images (siamese: one batched pass); ``src`` may be
        one image `[1, 3, H, W]` against B targets (its features are then computed once)."""
        check_model_images(self.backbone, src, "src")  # RGB, finite; in [0, 1] for the shipped backbones
        check_model_images(self.backbone, trg, "trg")
        check_tensor("trg", trg, shape=[None] + list(src.shape[1:]), floating=True)
        check_same_device(src=src, trg=trg)
        if src.shape[0] not in (1, trg.shape[0]):
            raise InputError(f"src batch {src.shape[0]} must be 1 or trg's {trg.shape[0]}")
        if self.paired:
            fs, ft = self.backbone.forward_pair(src, trg)  # type: ignore[operator]
        elif self.backbone_trg is not None:
            fs, ft = self._extract(self.backbone, src), self._extract(self.backbone_trg, trg)
        else:
            both = self._extract(self.backbone, torch.cat([src, trg]))
            fs, ft = both[: src.shape[0]], both[src.shape[0]:]
        if min(fs.shape[-2:]) < 2:
            raise InputError(f"images {list(src.shape[-2:])} give a {fs.shape[-2]} x {fs.shape[-1]} grid of features: CHM matches "
                             "cells of a grid of at least 2 x 2 (the shipped model: images of at least 32 px; 112 px as trained)")
        return fs, ft

    def correlate(self, src_feat: torch.Tensor, trg_feat: torch.Tensor, trg_scales: list[torch.Tensor] | None = None) -> torch.Tensor:
        """CHM correlation `[B, (2h)^2, (2h)^2]` of feature maps `[B, C, h, h]` (source cells as rows);
        ``src_feat`` may be one map `[1, C, h, h]` against B targets. ``trg_scales``: the targets'
        ``learner.scale_features`` computed beforehand (once per gallery image)."""
        check_tensor("src_feat", src_feat, ndim=4, floating=True, finite=True, non_empty=True)
        check_tensor("trg_feat", trg_feat, shape=[None] + list(src_feat.shape[1:]), floating=True, finite=True)
        if src_feat.shape[0] not in (1, trg_feat.shape[0]):
            raise InputError(f"src_feat batch {src_feat.shape[0]} must be 1 or trg_feat's {trg_feat.shape[0]}")
        if src_feat.shape[1] != self.feat_dim:
            raise InputError(f"features have {src_feat.shape[1]} channels; this CHMNet was built for {self.feat_dim}")
        return self.learner(src_feat, trg_feat, trg_scales)

    def forward(self, src: torch.Tensor, trg: torch.Tensor) -> torch.Tensor:
        """CHM correlation of image pairs `[B, 3, H, W]` (the authors' ``CHMNet.forward``)."""
        return self.correlate(*self.features(src, trg))

    # -- transfer ------------------------------------------------------------------------
    def transfer_normalised(self, corr: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
        """Move normalised points `[B, P, 2]` through a correlation from `correlate`."""
        side = int(round(corr.shape[1] ** 0.5))
        return transfer_points(corr, points, side, sigma=self.sigma, radius=self.radius)

    def transfer(self, src: torch.Tensor, tgt: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
        """Transfer ``points`` `[B, P, 2]` ((x, y) pixels of ``src``) onto ``tgt``.

        ``src`` and ``tgt`` are `[B, 3, H, W]` images as the backbone takes them (the authors'
        model: ImageNet-normalised 240 x 240). Returns `[B, P, 2]` (x, y) pixels of ``tgt``.
        """
        check_tensor("points", points, ndim=3, floating=True, finite=True)
        if points.shape[0] != tgt.shape[0] or points.shape[2] != 2:
            raise InputError(f"points must be [B={tgt.shape[0]}, P, 2] (x, y) pixels, got {list(points.shape)}")
        size = (src.shape[-2], src.shape[-1])
        corr = self(src, tgt)
        moved = self.transfer_normalised(corr, normalise_points(points.to(corr.dtype), size))
        return unnormalise_points(moved, size)
