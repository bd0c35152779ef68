"""Auxiliary feature models u for the semantic consistency term (paper section 3.2 and Table 4).

Any model works: `AuxiliaryModel.from_layer(model, "layer4")` reads a layer through the core's
`FeatureExtractor` and resamples it to f's grid (bilinear; antialiased when shrinking), as the paper
does with its ResNet-50 cut to 7x7. Shipped with the plugin, trained on SynthBirds by
``scripts/train_aux_models.py``:

- ``"ssl"``: a self-supervised SmallResNet (SimCLR global + dense cell InfoNCE, no labels), layer4;
- ``"parts"``: the parts detector (keypoint supervision: the upper bound), its per-cell part
  probabilities;
- ``"classifier"``: the classifier's own features (pass the classifier; the paper's weakest choice).
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Literal

import torch
import torch.nn.functional as F
from torch import nn

from xcorr_core import FeatureExtractor
from xcorr_core.errors import IndexFileError, InputError
from xcorr_core.models import ShippedWeights, SmallResNet, load_checkpoint

from .training import cell_logits

__all__ = ["AuxiliaryModel", "PartsDetector", "load_auxiliary", "load_parts_detector", "aux_card", "resample_grid",
           "load_ssl_resnet50"]


def resample_grid(x: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """Resample `[B, d, h', w']` to `[B, d, h, w]` (identity when the grid already matches)."""
    if tuple(x.shape[-2:]) == tuple(grid):
        return x
    shrink = x.shape[-2] > grid[0] or x.shape[-1] > grid[1]
    return F.interpolate(x, size=grid, mode="bilinear", align_corners=False, antialias=shrink)


class AuxiliaryModel:
    """u: images `[B, 3, H, W]` -> cell features `[B, d', h, w]` on a requested grid.

    Args:
        extract: images -> spatial features `[B, d', h', w']` (any grid).
        name: label for reports.
    """

    def __init__(self, extract: Callable[[torch.Tensor], torch.Tensor], name: str = "auxiliary") -> None:
        self.extract, self.name = extract, name
        self.source: tuple[nn.Module, str] | None = None  # (model, layer) when read from a model's layer

    @classmethod
    def from_layer(cls, model: nn.Module, layer: str, name: str | None = None) -> "AuxiliaryModel":
        """Features of ``model`` at ``layer`` (dotted name), read without changing the model."""
        fx = FeatureExtractor(model, [layer])
        aux = cls(lambda x: fx(x).maps[layer], name or f"{type(model).__name__}.{layer}")
        aux.source = (model, layer)
        return aux

    @torch.no_grad()
    def __call__(self, images: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        out = self.extract(images)
        if not isinstance(out, torch.Tensor) or out.ndim != 4:
            raise InputError(f"auxiliary model {self.name!r} must return [B, d', h, w], got {getattr(out, 'shape', type(out))}")
        return resample_grid(out.float(), grid)

    def __repr__(self) -> str:
        return f"AuxiliaryModel({self.name!r})"


class PartsDetector:
    """The SynthBirds parts detector: per layer4 cell, probabilities of background + each part.

    Args:
        model: a SmallResNet whose ``fc`` has ``1 + P`` outputs, applied to every cell.
        part_names: the P part names (SynthBirds' ``PART_NAMES`` order).
    """

    def __init__(self, model: SmallResNet, part_names: tuple[str, ...]) -> None:
        if model.out_dim != 1 + len(part_names):
            raise InputError(f"parts detector has {model.out_dim} outputs, expected 1 + {len(part_names)}")
        self.model, self.part_names = model, tuple(part_names)

    @torch.no_grad()
    def cell_probs(self, images: torch.Tensor) -> torch.Tensor:
        """`[B, 1 + P, 7, 7]` at 112 px (channel 0 = background)."""
        return cell_logits(self.model, images).softmax(1)

    @torch.no_grad()
    def top_parts(self, images: torch.Tensor, k: int = 3) -> torch.Tensor:
        """The k most probable parts per cell (background excluded): long `[B, h*w, k]` part indices."""
        p = self.cell_probs(images)[:, 1:].flatten(2).transpose(1, 2)
        return p.topk(k, dim=-1).indices

    def auxiliary(self) -> AuxiliaryModel:
        return AuxiliaryModel(self.cell_probs, "parts detector")


WEIGHTS = ShippedWeights("xcorr_scc_counterfactual", "plugins/scc_counterfactual/scripts/train_aux_models.py")


def aux_card() -> dict:
    """Training figures of the shipped auxiliary models."""
    return WEIGHTS.card("aux_card.json")


def _shipped(name: str) -> SmallResNet:
    return load_checkpoint(WEIGHTS.require(f"{name}_smallresnet.pt"))


def load_parts_detector() -> PartsDetector:
    """The shipped SynthBirds parts detector."""
    from xcorr_core.data.synth_birds import PART_NAMES

    return PartsDetector(_shipped("parts"), PART_NAMES)


def load_auxiliary(name: Literal["ssl", "parts", "classifier"], classifier: nn.Module | None = None,
                   layer: str = "layer4") -> AuxiliaryModel:
    """A ready auxiliary model: ``"ssl"`` / ``"parts"`` (shipped) or ``"classifier"`` (``classifier`` at ``layer``)."""
    if name == "ssl":
        return AuxiliaryModel.from_layer(_shipped("ssl"), layer, "self-supervised SmallResNet")
    if name == "parts":
        return load_parts_detector().auxiliary()
    if name == "classifier":
        if classifier is None:
            raise InputError("load_auxiliary('classifier') needs the classifier")
        return AuxiliaryModel.from_layer(classifier, layer, f"classifier features ({layer})")
    raise InputError(f"unknown auxiliary model {name!r}: use 'ssl', 'parts' or 'classifier'")


_SSL_PREFIXES = ("module.", "backbone.", "encoder.", "model.", "trunk.")


def load_ssl_resnet50(path: str | Path, *, normalize: bool = True) -> nn.Module:
    """A torchvision ResNet-50 trunk from a self-supervised checkpoint (SwAV, DeepCluster-v2, MoCo ...).

    Accepts a state dict or a dict holding one under ``state_dict`` / ``model``; strips wrapper
    prefixes (``module.``, ``backbone.``, ``encoder.``, ...), ignores heads (``fc``, projection and
    prototype layers) and requires every trunk weight. Loaded with ``weights_only=True``. Use it as
    ``AuxiliaryModel.from_layer(load_ssl_resnet50(p), "layer4")`` (2048 x 7 x 7 at 224 px).

    Args:
        normalize: bake ImageNet normalisation into the model (inputs in [0, 1]).
    """
    import torchvision

    from xcorr_core.models import imagenet_normalize, read_state_dict

    path = Path(path)
    state = read_state_dict(path)
    clean: dict[str, torch.Tensor] = {}
    for k, v in state.items():
        while k.startswith(_SSL_PREFIXES):
            k = next(k[len(p):] for p in _SSL_PREFIXES if k.startswith(p))
        clean[k] = v
    model = torchvision.models.resnet50(weights=None)
    trunk = {k for k in model.state_dict() if not k.startswith("fc.")}
    missing = sorted(trunk - clean.keys())
    if missing:
        raise IndexFileError(f"{path} lacks ResNet-50 trunk weights, e.g. {missing[:3]} ({len(missing)} missing)")
    model.load_state_dict({k: clean[k] for k in trunk}, strict=False)
    if normalize:
        norm = imagenet_normalize()
        model.register_forward_pre_hook(lambda _m, args: (norm(args[0]), *args[1:]))
    return model.eval()
