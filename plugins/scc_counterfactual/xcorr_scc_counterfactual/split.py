"""Cutting a classifier into f (images -> spatial features `[B, d, h, w]`) and g (features -> logits).

f always runs the user's own forward up to the named layer (through `xcorr_core.FeatureExtractor`,
so forward pre-hooks such as a baked-in normalisation still apply, and the model is never changed);
g is assembled from the model's own modules for torchvision ResNets (cut after any stage or block,
e.g. the authors' ``layer4.0``), torchvision VGG-like models (``features`` or ``features.N``: VGG,
ConvNeXt, EfficientNet), the shipped SmallResNet, and (``tails.py``) timm ViTs, Swins, EfficientNets
and ConvNeXts and torchvision ViTs. Any other model: pass ``g`` yourself (any module mapping
`[B, d, h, w]` to logits).

When g is global average pooling followed by one linear layer, `ModelSplit.linear_head` holds its
weight and bias so the search can use the exact closed form of a cell replacement.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import torch
from torch import nn

from xcorr_core import FeatureExtractor
from xcorr_core.errors import InputError, LayerNotFoundError

from .chain import _Chain, _modules_of
from .tails import TokenTail, tail_for

if TYPE_CHECKING:
    from .local import LocalTail

__all__ = ["ModelSplit", "split_model", "PoolLinear", "linear_head_of", "first_linear_of", "in_training"]


class PoolLinear(nn.Module):
    """g = global average pooling + linear: `[B, d, h, w]` -> `[B, C]`."""

    def __init__(self, fc: nn.Linear) -> None:
        super().__init__()
        self.fc = fc

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.mean((2, 3)))


def in_training(g: nn.Module) -> bool:
    """Whether any module of ``g`` (other than this file's parameter-free wrappers) is in training mode."""
    return any(m.training for m in g.modules() if not isinstance(m, (PoolLinear, _Chain, nn.ModuleList)))


def linear_head_of(g: nn.Module) -> tuple[torch.Tensor, torch.Tensor | None] | None:
    """(weight `[C, d]`, bias `[C]`) when ``g`` is global average pooling + one linear layer, else None.

    Recognised: `PoolLinear`, and ``nn.Sequential`` / chains of (AdaptiveAvgPool2d(1) | AvgPool over
    the whole map), optional Flatten, Linear.
    """
    if isinstance(g, PoolLinear):
        return g.fc.weight, g.fc.bias
    mods = _modules_of(g)
    if not mods:
        return None
    mods = [m for m in mods if not isinstance(m, (nn.Flatten, nn.Identity, nn.Dropout))]
    if (len(mods) == 2 and isinstance(mods[0], nn.AdaptiveAvgPool2d) and mods[0].output_size in (1, (1, 1))
            and isinstance(mods[1], nn.Linear)):
        return mods[1].weight, mods[1].bias
    return None


def _is_identity_for(m: nn.Module, grid: tuple[int, int]) -> bool:
    if isinstance(m, (nn.Identity, nn.Flatten, nn.Dropout)):
        return True
    if isinstance(m, nn.AdaptiveAvgPool2d):
        size = m.output_size if isinstance(m.output_size, tuple) else (m.output_size, m.output_size)
        return tuple(size) == tuple(grid)  # VGG's avgpool on a 7x7 map does nothing
    return False


def first_linear_of(g: nn.Module, shape: tuple[int, int, int]) -> tuple[torch.Tensor, torch.Tensor | None, nn.Module] | None:
    """(W1 blocks `[h*w, d, out]`, b1 `[out]`, rest) when ``g`` starts (after steps that are identities
    on a `[d, h, w]` map: dropout, flatten, VGG's 7x7 adaptive pooling) with a linear layer on the
    flattened map, as VGG's classifier does. Block p is the part of W1 that reads cell p (transposed,
    contiguous: a copy of W1, 411 MB for VGG-16); ``rest`` maps the first layer's output `[B, out]`
    to logits."""
    mods = _modules_of(g)
    if not mods:
        return None
    d, h, w = shape
    k = 0
    while k < len(mods) and _is_identity_for(mods[k], (h, w)):
        k += 1
    if k == len(mods) or not isinstance(mods[k], nn.Linear) or mods[k].in_features != d * h * w:
        return None
    lin = mods[k]
    with torch.no_grad():
        blocks = lin.weight.detach().view(lin.out_features, d, h * w).permute(2, 1, 0).contiguous()
    return blocks, lin.bias, nn.Sequential(*mods[k + 1:])


class ModelSplit:
    """A classifier as f (spatial features) and g (decision network).

    Args:
        f: callable images `[B, 3, H, W]` -> features `[B, d, h, w]`.
        g: module features `[B, d, h, w]` -> logits `[B, C]`.
        layer: the layer name f ends at (for reports).
    """

    def __init__(self, f: Callable[[torch.Tensor], torch.Tensor], g: nn.Module, layer: str = "") -> None:
        self.f, self.g, self.layer = f, g, layer
        self.linear_head = linear_head_of(g)
        self._first_linear: dict[tuple[int, int, int], object] = {}
        self._local_tail: object = False  # not parsed yet

    @torch.no_grad()
    def features(self, images: torch.Tensor) -> torch.Tensor:
        """f(images) `[B, d, h, w]`."""
        out = self.f(images)
        if isinstance(self.g, TokenTail) and isinstance(self.f, _LayerFeatures):
            self.g.remember(self.f.last_prefix)  # g puts these prefix tokens (the query's) before edited cells
        if not isinstance(out, torch.Tensor) or out.ndim != 4:
            raise InputError(f"f must return spatial features [B, d, h, w], got {getattr(out, 'shape', type(out))}")
        return out

    @torch.no_grad()
    def logits(self, features: torch.Tensor) -> torch.Tensor:
        """g(features) `[B, C]`."""
        return self.g(features)

    def first_linear(self, shape: tuple[int, int, int]) -> tuple[torch.Tensor, torch.Tensor | None, nn.Module] | None:
        """See `first_linear_of` (None when g is pooling + linear: the closed form is cheaper)."""
        if self.linear_head is not None:
            return None
        if shape not in self._first_linear:  # the block copy is made once per split and grid
            self._first_linear[shape] = first_linear_of(self.g, shape)
        return self._first_linear[shape]  # type: ignore[return-value]

    def local_tail(self) -> "LocalTail | None":
        """g's residual tail with BatchNorm folded (`local.local_tail_of`), parsed once per split; None
        when g is not one (or is pooling + linear)."""
        if self._local_tail is False:
            from .local import local_tail_of

            self._local_tail = None if self.linear_head is not None else local_tail_of(self.g)
        return self._local_tail  # type: ignore[return-value]

    @property
    def source(self) -> tuple[nn.Module, str] | None:
        """(model, layer) when f reads a model's layer (`split_model`), else None."""
        return (self.f.model, self.f.layer) if isinstance(self.f, _LayerFeatures) else None

    @property
    def training(self) -> bool:
        return in_training(self.g)


class _LayerFeatures:
    def __init__(self, model: nn.Module, layer: str) -> None:
        self.fx = FeatureExtractor(model, [layer])
        self.model, self.layer = model, layer
        self.last_prefix = torch.zeros(0)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        feats = self.fx(images)
        self.last_prefix = feats.prefix.get(self.layer, self.last_prefix)
        return feats.maps[self.layer]


def _resnet_blocks(model: nn.Module) -> list[tuple[str, nn.Module]]:
    blocks: list[tuple[str, nn.Module]] = []
    for s in ("layer1", "layer2", "layer3", "layer4"):
        stage = getattr(model, s)
        if isinstance(stage, nn.Sequential):
            blocks.extend((f"{s}.{i}", b) for i, b in enumerate(stage))
            blocks.append((s, nn.Identity()))  # cutting after a stage = after its last block
        else:
            blocks.append((s, stage))
    return blocks


def _resnet_g(model: nn.Module, layer: str) -> nn.Module:
    blocks = _resnet_blocks(model)
    names = [n for n, _ in blocks]
    if layer not in names:
        raise LayerNotFoundError(f"cannot cut {type(model).__name__} at {layer!r}: use a stage or block, one of {', '.join(names)}")
    rest = [b for _, b in blocks[names.index(layer) + 1:] if not isinstance(b, nn.Identity)]
    if getattr(model, "head", "classifier") == "embedding":
        raise InputError("this model is an embedding model; counterfactuals need a classifier (logits)")
    if not rest:
        return PoolLinear(model.fc)
    return _Chain([*rest, model.avgpool, model.fc])


def _vgg_g(model: nn.Module, layer: str) -> nn.Module:
    feats = model.features
    if layer == "features":
        k = len(feats) - 1
    elif layer.startswith("features.") and layer[9:].isdigit() and int(layer[9:]) < len(feats):
        k = int(layer[9:])
    else:
        raise LayerNotFoundError(f"cannot cut {type(model).__name__} at {layer!r}: use 'features' or 'features.N' (N < {len(feats)})")
    return _Chain([*list(feats)[k + 1:], model.avgpool, *model.classifier])


#: named cuts: ``"paper"`` is the paper's (ResNet-50 after ``layer4.0``, so g = layer4[1:] + pool + fc,
#: non-linear; VGG-16 after ``features``); ``"closed_form"`` cuts a ResNet after ``layer4``, where g is
#: pooling + linear and the search is exact in closed form (the plugin's default)
SPLIT_PRESETS: dict[str, dict[str, str]] = {"paper": {"resnet": "layer4.0", "vgg": "features"},
                                            "closed_form": {"resnet": "layer4"}}


def _family(model: nn.Module) -> str | None:
    if all(hasattr(model, a) for a in ("layer1", "layer2", "layer3", "layer4", "avgpool", "fc")):
        return "resnet"
    if all(hasattr(model, a) for a in ("features", "avgpool", "classifier")):
        return "vgg"
    return None


def resolve_layer(model: nn.Module, layer: str) -> str:
    """The layer a preset name (`SPLIT_PRESETS`) stands for on ``model``; other names unchanged."""
    if layer not in SPLIT_PRESETS:
        return layer
    fam = _family(model)
    if fam not in SPLIT_PRESETS[layer]:
        known = ", ".join(SPLIT_PRESETS[layer])
        raise InputError(f"the {layer!r} split is defined for {known} models, not {type(model).__name__}: name the layer")
    return SPLIT_PRESETS[layer][fam]  # type: ignore[index]


def split_model(model: nn.Module, layer: str, g: nn.Module | None = None) -> ModelSplit:
    """Cut ``model`` after ``layer`` (dotted name, or a preset of `SPLIT_PRESETS`) into f and g.

    Args:
        model: a classifier (eval mode) mapping images to logits `[B, C]`.
        layer: where f ends, e.g. ``"layer4"`` (the shipped SmallResNet, 7x7 at 112 px),
            ``"layer4.0"`` (the authors' ResNet-50 cut, 2048x7x7 at 224 px) or ``"features"`` (VGG-16);
            ``"paper"`` picks the paper's cut for a ResNet or a VGG, ``"closed_form"`` a ResNet's ``layer4``.
        g: the decision network from that layer's output to logits, for architectures this function
            does not know; it is used as given.
    """
    layer = resolve_layer(model, layer)
    f = _LayerFeatures(model, layer)  # validates the layer name
    if g is None:
        fam = _family(model)
        if fam == "resnet":
            g = _resnet_g(model, layer)
        elif fam == "vgg":
            g = _vgg_g(model, layer)
        else:
            g = tail_for(model, layer)
            if g is None:
                raise InputError(
                    f"do not know how to build g for {type(model).__name__}; pass g= (a module mapping the cells of "
                    f"{layer!r} [B, d, h, w] to logits [B, C]). Known: torchvision ResNets, VGG-like (features + avgpool + "
                    "classifier: VGG, ConvNeXt, EfficientNet) and ViTs; timm ViT, Swin, EfficientNet and ConvNeXt"
                )
    return ModelSplit(f, g, layer)
