"""The ProtoKNN network: backbone map -> 1x1 add-on -> patch embeddings z; the similarity profile
s_i = max over patches of cos(z, p_i) against M fixed prototypes; an auxiliary pooled embedding
used only by the training loss.

The prototypes are a buffer, never a parameter: they are set before training
(`prototypes.spread_prototypes`) and changed only by projection. The ``profile`` submodule
outputs the profile as `[B, M, 1, 1]`, so a `xcorr_core.Pipeline` with ``pooled_layer:
profile`` and ``index.metric: l2`` runs the paper's kNN on profiles.
Depends on torch and the core's feature extractor.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict
from torch import nn

from xcorr_core.errors import InputError
from xcorr_core.features import FeatureExtractor
from xcorr_core.models import check_model_images, takes_unit_images

from .prototypes import spread_prototypes

__all__ = ["ProtoKNNNet", "ProtoOutput", "Profile"]


class ProtoOutput(BaseModel):
    """What one forward pass gives the losses.

    Attributes:
        profiles: `[B, M]` s_a,i = max_z cos(z, p_i).
        cosines: `[B, M, P]` cosine of every patch (P = h w) with every prototype.
        aux: `[B, D_aux]` L2-normalised auxiliary embedding (g hat).
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)
    profiles: torch.Tensor
    cosines: torch.Tensor
    aux: torch.Tensor


class Profile(nn.Module):
    """Max over patches of the cosine to each prototype: `[B, D, h, w]` -> `[B, M, 1, 1]`."""

    def __init__(self, prototypes: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("prototypes", F.normalize(prototypes.float(), dim=1))

    def cosines(self, z: torch.Tensor) -> torch.Tensor:
        """`[B, M, h w]` cosines of the patches of ``z`` `[B, D, h, w]` with the prototypes."""
        return torch.einsum("bdp,md->bmp", F.normalize(z.flatten(2), dim=1), self.prototypes)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.cosines(z).amax(-1)[..., None, None]


class ProtoKNNNet(nn.Module):
    """Backbone + add-on + fixed prototypes (+ auxiliary head).

    Args:
        backbone: any network taking images `[B, 3, H, W]`; ``layer`` names the module whose
            output is the spatial map `[B, C, h, w]`.
        layer: the backbone layer (e.g. ``"layer4"``).
        channels: C, channels at ``layer``.
        dim: D, patch-embedding size of the 1x1 add-on (paper: 256; SynthBirds: 64).
        prototypes: M, the number of prototypes (paper: 512; SynthBirds: 128), or a `[M, D]` tensor.
        addon_activation: after the add-on: ``none`` (the paper says nothing) or ``sigmoid`` (ProtoTree).
        seed: seed of the prototype spreading.
    """

    def __init__(self, backbone: nn.Module, layer: str, channels: int, *, dim: int = 64, prototypes: int | torch.Tensor = 128,
                 addon_activation: str = "none", prototype_steps: int = 10_000, seed: int = 0) -> None:
        super().__init__()
        if addon_activation not in ("none", "sigmoid"):
            raise InputError(f"addon_activation must be 'none' or 'sigmoid', got {addon_activation!r}")
        self.backbone, self.layer, self.channels, self.dim = backbone, layer, channels, dim
        self.addon_activation = addon_activation
        self._fx = FeatureExtractor(backbone, [layer], grad=True)
        self.addon = nn.Conv2d(channels, dim, 1)
        protos = prototypes if isinstance(prototypes, torch.Tensor) else spread_prototypes(prototypes, dim, steps=prototype_steps, seed=seed)
        if protos.ndim != 2 or protos.shape[1] != dim:
            raise InputError(f"prototypes must be [M, {dim}], got {list(protos.shape)}")
        self.profile = Profile(protos)
        self.aux_head = nn.Linear(channels, dim)

    @property
    def prototypes(self) -> torch.Tensor:
        """`[M, D]` unit prototypes (a buffer: frozen in training, moved only by projection)."""
        return self.profile.prototypes

    @property
    def num_prototypes(self) -> int:
        return int(self.profile.prototypes.shape[0])

    def feature_map(self, images: torch.Tensor) -> torch.Tensor:
        """Backbone map `[B, C, h, w]`; a layer without spatial extent is an error. Images for a backbone
        that takes [0, 1] RGB (the shipped ones, named models) are checked as the pipeline checks them."""
        if takes_unit_images(self.backbone):
            check_model_images(self.backbone, images)
        fmap = self._fx(images).maps[self.layer]
        if fmap.ndim != 4 or fmap.shape[-1] * fmap.shape[-2] < 2:
            raise InputError(f"layer {self.layer!r} gives {list(fmap.shape)}: ProtoKNN needs a spatial map [B, C, h, w] with h w >= 2")
        return fmap

    def patches(self, fmap: torch.Tensor) -> torch.Tensor:
        """Patch embeddings z `[B, D, h, w]` of a backbone map."""
        z = self.addon(fmap)
        return torch.sigmoid(z) if self.addon_activation == "sigmoid" else z

    def outputs(self, images: torch.Tensor) -> ProtoOutput:
        """Profiles, patch cosines and the auxiliary embedding of ``images`` (for the losses)."""
        fmap = self.feature_map(images)
        cos = self.profile.cosines(self.patches(fmap))
        aux = F.normalize(self.aux_head(fmap.mean((2, 3))), dim=1)
        return ProtoOutput(profiles=cos.amax(-1), cosines=cos, aux=aux)

    def profiles(self, images: torch.Tensor) -> torch.Tensor:
        """Profiles `[B, M]` of ``images`` `[B, 3, H, W]` (taken as the backbone takes them)."""
        return self(images)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.profile(self.patches(self.feature_map(images))).flatten(1)
