"""Layouts: what a layer's output is, and how it becomes a `[B, C, h, w]` grid of cells and a pooled vector.

A layer of "any nn.Module" may give channels-first maps `[B, C, H, W]` (CNNs), channels-last maps
`[B, H, W, C]` (Swin, some ConvNeXt blocks), tokens `[B, N, C]` whose first ``prefix_tokens`` are
CLS / register / distillation tokens followed by a row-major patch grid (ViT, DeiT, DINOv2, CLIP),
sequence-first tokens `[N, B, C]` (``nn.MultiheadAttention`` without ``batch_first``), vectors
`[B, C]`, or a Hugging Face output (a tuple or ``ModelOutput`` whose first tensor is the hidden
state). `detect_layout` reads which from the model's own attributes (timm ``num_prefix_tokens``,
torchvision's ``class_token``, Hugging Face ``cls_token`` / ``distillation_token`` /
``register_tokens``, open_clip's ``class_embedding``, the patch-embedding convolution) and the
output's shape against the input's; when they do not settle it, it raises `LayoutError` saying
what to set. It never guesses. `to_grid` and `pool` then read the output as that layout.

Depends on torch, pydantic and the core's errors/results modules only.
"""
from __future__ import annotations

import math
from typing import Any, Literal

import torch
from pydantic import Field
from torch import nn

from .components import StrictConfig
from .errors import InputError

__all__ = ["Layout", "LayoutError", "Pooling", "detect_layout", "first_tensor", "to_grid", "from_grid", "replace_first", "GridCapture", "CapturedAll", "model_output", "prefix_of", "pool", "prefix_tokens", "patch_size"]

Pooling = Literal["auto", "mean", "cls", "output"]
_KINDS = ("channels_first", "channels_last", "tokens", "tokens_seq_first", "vector")


class LayoutError(InputError):
    """The layout of a layer's output cannot be determined (or does not fit the output): the
    message says which layout fields to set (``FeatureExtractor(layout=...)`` or the spec's
    ``features.layout``)."""


class Layout(StrictConfig):
    """How to read one layer's output.

    ``kind``: ``auto`` (detect), ``channels_first`` `[B, C, H, W]`, ``channels_last`` `[B, H, W, C]`,
    ``tokens`` `[B, N, C]`, ``tokens_seq_first`` `[N, B, C]` or ``vector`` `[B, C]`.
    ``prefix_tokens``: tokens before the patch grid (CLS, registers, distillation); ``grid``: the
    patch grid `(h, w)` of token layouts. Either may be left None for detection to fill in.
    """

    kind: Literal["auto", "channels_first", "channels_last", "tokens", "tokens_seq_first", "vector"] = "auto"
    prefix_tokens: int | None = Field(None, ge=0, description="tokens before the patch grid (tokens layouts)")
    grid: tuple[int, int] | None = Field(None, description="patch grid (h, w) of a tokens layout")

    @property
    def is_tokens(self) -> bool:
        return self.kind in ("tokens", "tokens_seq_first")

    def describe(self) -> str:
        if self.is_tokens:
            return f"{self.kind} (prefix_tokens={self.prefix_tokens}, grid={self.grid})"
        return self.kind


_HINT = ("set it explicitly: FeatureExtractor(model, layers, layout={'kind': 'channels_first' | 'channels_last' | 'tokens', "
         "'prefix_tokens': P, 'grid': [h, w]}), or in a spec features.layout: {kind: ..., prefix_tokens: ..., grid: [h, w]}")


def first_tensor(out: Any, layer: str = "output") -> torch.Tensor:
    """The tensor a layer output stands for: itself, the first tensor of a tuple/list, or a Hugging Face
    ``ModelOutput``'s first field (``last_hidden_state``)."""
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, dict):  # ModelOutput is an OrderedDict of its non-None fields
        vals = [v for v in out.values() if isinstance(v, torch.Tensor)]
        if vals:
            return vals[0]
    if isinstance(out, (tuple, list)):
        for v in out:
            if isinstance(v, torch.Tensor):
                return v
    raise InputError(f"layer {layer!r} returns {type(out).__name__} with no tensor in it; name a layer that outputs a tensor")


# -- what the model says about itself -------------------------------------------------------------
def prefix_tokens(model: nn.Module) -> int | None:
    """Tokens before the patch grid, read from the model's attributes; None when it does not say."""
    n = getattr(model, "num_prefix_tokens", None)  # timm ViT / DeiT / EVA
    if isinstance(n, int):
        return n
    if isinstance(getattr(model, "class_token", None), torch.Tensor):  # torchvision VisionTransformer
        return 1
    if isinstance(getattr(model, "class_embedding", None), torch.Tensor):  # open_clip VisionTransformer
        return 1
    for name, mod in model.named_modules():  # Hugging Face ViT / DeiT / DINOv2 (+ registers) / CLIP embeddings
        if name.split(".")[-1] not in ("embeddings", "embedding"):
            continue
        count, seen = 0, False
        for attr in ("cls_token", "class_embedding", "distillation_token", "register_tokens"):
            t = getattr(mod, attr, None)
            if isinstance(t, torch.Tensor):
                seen = True
                count += t.shape[1] if attr == "register_tokens" and t.ndim == 3 else 1
        if seen:
            return count
        if hasattr(mod, "patch_embeddings"):  # e.g. Hugging Face Swin: embeddings without prefix tokens
            return 0
    if getattr(model, "patch_embed", None) is not None and not hasattr(model, "cls_token"):
        return 0 if getattr(model, "output_fmt", None) == "NHWC" or "swin" in type(model).__name__.lower() else None
    return None


def patch_size(model: nn.Module) -> tuple[int, int] | None:
    """The stride of the model's patch embedding: the first ``Conv2d`` on 3 channels whose kernel
    equals its stride (ViT / DeiT / DINOv2 / CLIP / Swin); None for models without one."""
    for mod in model.modules():
        if isinstance(mod, nn.Conv2d) and mod.in_channels in (1, 3) and tuple(mod.kernel_size) == tuple(mod.stride) \
                and mod.stride[0] > 1:
            return (int(mod.stride[0]), int(mod.stride[1]))
        if isinstance(mod, nn.Conv2d):
            return None  # the model's first convolution is not a patchifier: a CNN
    return None


# -- detection --------------------------------------------------------------------------------------
def _fits(h: int, w: int, size: tuple[int, int], slack: int) -> bool:
    """Does an `(h, w)` grid have the input's aspect (within ``slack`` cells) and no more cells than pixels?"""
    H, W = size
    return 0 < h <= H and 0 < w <= W and abs(h * W - w * H) <= slack * max(H, W)


def _token_grid(n: int, size: tuple[int, int], patch: tuple[int, int] | None) -> tuple[int, int] | None:
    """An `(h, w)` with ``h * w == n`` and the input's aspect: from the patch size if it fits, else solved."""
    H, W = size
    if patch is not None and (H // patch[0]) * (W // patch[1]) == n:
        return (H // patch[0], W // patch[1])
    if n <= 0:
        return None
    h = max(1, round(math.sqrt(n * H / W)))
    for cand in (h, h - 1, h + 1):
        if cand > 0 and n % cand == 0 and _fits(cand, n // cand, size, 1):
            return (cand, n // cand)
    return None


def detect_layout(model: nn.Module, out: torch.Tensor, input_size: tuple[int, int], batch: int, *,
                  given: Layout | None = None, layer: str = "layer") -> Layout:
    """The layout of ``out``, the output of ``layer`` for a batch of ``batch`` images of ``input_size``
    `(H, W)`: ``given`` with its None fields filled in, or detected. Raises `LayoutError`."""
    given = given or Layout()
    where = f"layer {layer!r} of {type(model).__name__} gives {list(out.shape)} for images {list(input_size)}"
    kind = given.kind
    if kind == "auto":
        if out.ndim == 2:
            kind = "vector"
        elif out.ndim == 4:
            cf_exact, cl_exact = _fits(out.shape[2], out.shape[3], input_size, 0), _fits(out.shape[1], out.shape[2], input_size, 0)
            cf, cl = (cf_exact, cl_exact) if cf_exact or cl_exact else (_fits(out.shape[2], out.shape[3], input_size, 1),
                                                                         _fits(out.shape[1], out.shape[2], input_size, 1))
            if cf == cl:
                why = "both channels-first and channels-last fit" if cf else "neither channels-first nor channels-last fits the image's aspect"
                raise LayoutError(f"{where}: {why}; {_HINT}")
            kind = "channels_first" if cf else "channels_last"
        elif out.ndim == 3:
            seq_first = out.shape[0] != batch and out.shape[1] == batch
            if out.shape[0] == out.shape[1] == batch:
                raise LayoutError(f"{where}: batch and sequence axes have the same size; {_HINT}")
            if out.shape[0] != batch and not seq_first:
                raise LayoutError(f"{where}: no axis has the batch size {batch}")
            kind = "tokens_seq_first" if seq_first else "tokens"
        else:
            raise LayoutError(f"{where}: a {out.ndim}-d output is not a map, token sequence or vector; {_HINT}")
    layout = Layout(kind=kind, prefix_tokens=given.prefix_tokens, grid=given.grid)
    if not layout.is_tokens:
        return layout
    n = out.shape[1] if kind == "tokens" else out.shape[0]
    p = given.prefix_tokens
    grid = given.grid
    if p is None and grid is not None:
        p = n - grid[0] * grid[1]
    if p is None:
        p = prefix_tokens(model)
    patch = patch_size(model)
    if p is None and patch is not None:
        g = (input_size[0] // patch[0], input_size[1] // patch[1])
        if 0 <= n - g[0] * g[1] <= 16:
            p = n - g[0] * g[1]
    if p is None:
        raise LayoutError(f"{where}: the model does not say how many prefix (CLS / register) tokens come before the patch grid; "
                          f"{_HINT}")
    if grid is None:
        grid = _token_grid(n - p, input_size, patch)
    if grid is None or p < 0 or grid[0] * grid[1] != n - p:
        raise LayoutError(f"{where}: {n} tokens with {p} prefix tokens do not form a patch grid of the image's aspect; {_HINT}")
    return Layout(kind=kind, prefix_tokens=p, grid=grid)


# -- reading ----------------------------------------------------------------------------------------
def _check(out: torch.Tensor, layout: Layout, ndim: int) -> None:
    if out.ndim != ndim:
        raise LayoutError(f"layout {layout.describe()} needs a {ndim}-d output, got {list(out.shape)}; {_HINT}")


def to_grid(out: torch.Tensor, layout: Layout) -> torch.Tensor:
    """The output as cells `[B, C, h, w]` (a view where possible; the autograd graph is kept), or
    `[B, C]` unchanged for a ``vector`` layout. Prefix tokens are left out of the grid."""
    if layout.kind == "vector":
        _check(out, layout, 2)
        return out
    if layout.kind == "channels_first":
        _check(out, layout, 4)
        return out
    if layout.kind == "channels_last":
        _check(out, layout, 4)
        return out.permute(0, 3, 1, 2)
    _check(out, layout, 3)
    tokens = out.transpose(0, 1) if layout.kind == "tokens_seq_first" else out
    p, (h, w) = layout.prefix_tokens or 0, layout.grid  # type: ignore[misc]
    if tokens.shape[1] != p + h * w:
        raise LayoutError(f"layout {layout.describe()} expects {p + h * w} tokens, got {tokens.shape[1]}; {_HINT}")
    return tokens[:, p:].transpose(1, 2).unflatten(2, (h, w))


def prefix_of(out: torch.Tensor, layout: Layout) -> torch.Tensor:
    """The prefix tokens `[B, P, C]` of a tokens output (P = 0 gives an empty tensor)."""
    tokens = out.transpose(0, 1) if layout.kind == "tokens_seq_first" else out
    return tokens[:, : layout.prefix_tokens or 0]


def from_grid(grid: torch.Tensor, raw: torch.Tensor, layout: Layout) -> torch.Tensor:
    """Inverse of `to_grid`: the layer output rebuilt from ``grid`` `[B, C, h, w]` (prefix tokens taken
    from ``raw``, the original output), equal in value and differentiable w.r.t. ``grid``."""
    if layout.kind in ("channels_first", "vector"):
        return grid
    if layout.kind == "channels_last":
        return grid.permute(0, 2, 3, 1)
    rebuilt = torch.cat([prefix_of(raw, layout), grid.flatten(2).transpose(1, 2)], dim=1)
    return rebuilt.transpose(0, 1) if layout.kind == "tokens_seq_first" else rebuilt


def replace_first(out: Any, new: torch.Tensor) -> Any:
    """``out`` with its first tensor replaced by ``new`` (a tensor, tuple/list or ``ModelOutput``)."""
    if isinstance(out, torch.Tensor):
        return new
    if isinstance(out, dict):
        key = next(k for k, v in out.items() if isinstance(v, torch.Tensor))
        out[key] = new
        return out
    i = next(i for i, v in enumerate(out) if isinstance(v, torch.Tensor))
    return type(out)([*out[:i], new, *out[i + 1:]]) if isinstance(out, list) else (*out[:i], new, *out[i + 1:])


class CapturedAll(Exception):
    """Raised inside a forward hook once every layer a `GridCapture` with ``stop=True`` wants is read."""


class GridCapture:
    """Forward hooks that read the outputs of ``layers`` as grids `[B, C, h, w]` at every forward of
    ``model``: the one capture mechanism of `FeatureExtractor` and of explainers that differentiate
    w.r.t. a layer. A pre-hook on the model records the input size its layers see (after the model's
    own pre-hooks, e.g. a resize). Use as a context manager; every hook is removed on exit.

    Args:
        layouts: layer name -> the given `Layout` (kind ``auto`` or missing: detected; see `detect_layout`).
        rebuild: the rest of the model runs on (a rebuild of) each grid, equal in value, so gradients
            w.r.t. the grids exist whatever the layout (channels-first outputs are the grid already).
        stop: raise `CapturedAll` once every layer is read (ends the forward early).
        cache: a dict of detected layouts kept across calls (keyed by layer, output shape, input shape).

    After a forward: ``raw`` (the layers' output tensors), ``grids`` and ``layouts``, by layer name.
    """

    def __init__(self, model: nn.Module, layers: str | list[str], layouts: dict[str, Layout] | None = None, *, rebuild: bool = True,
                 stop: bool = False, cache: dict[tuple[Any, ...], Layout] | None = None) -> None:
        self.model, self.layers = model, [layers] if isinstance(layers, str) else list(layers)
        modules = dict(model.named_modules())
        self._modules = {n: modules[n] for n in self.layers}
        self.given, self.rebuild, self.stop = layouts or {}, rebuild, stop
        self.cache: dict[tuple[Any, ...], Layout] = cache if cache is not None else {}
        self.raw: dict[str, torch.Tensor] = {}
        self.grids: dict[str, torch.Tensor] = {}
        self.layouts: dict[str, Layout] = {}
        self._size: tuple[int, ...] = ()
        self._handles: list[Any] = []

    @property
    def grid(self) -> torch.Tensor | None:
        """The first layer's grid of the last forward (None before one)."""
        return self.grids.get(self.layers[0])

    def _pre(self, _m: nn.Module, args: tuple) -> None:
        x = args[0] if args else None
        if isinstance(x, torch.Tensor) and x.ndim == 4:
            self._size = tuple(x.shape)

    def _hook(self, name: str) -> Any:
        def post(_m: nn.Module, _i: Any, out: Any) -> Any:
            t = first_tensor(out, name)
            if not self._size:
                raise LayoutError(f"the model's input was not seen before layer {name!r}; {_HINT}")
            key = (name, tuple(t.shape), self._size)
            if key not in self.cache:
                size = self._size
                self.cache[key] = detect_layout(self.model, t, (int(size[2]), int(size[3])), int(size[0]), given=self.given.get(name),
                                                layer=name)
            layout = self.cache[key]
            grid = to_grid(t, layout)
            self.raw[name], self.grids[name], self.layouts[name] = t, grid, layout
            if self.stop and len(self.grids) == len(self.layers):
                raise CapturedAll
            if self.rebuild and layout.kind not in ("channels_first", "vector"):
                return replace_first(out, from_grid(grid, t, layout))
            return None

        return post

    def __enter__(self) -> "GridCapture":
        self.raw, self.grids, self.layouts, self._size = {}, {}, {}, ()
        self._handles = [self.model.register_forward_pre_hook(self._pre)]
        self._handles += [m.register_forward_hook(self._hook(n)) for n, m in self._modules.items()]
        return self

    def __exit__(self, *exc: Any) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []


def model_output(output: Any) -> torch.Tensor | None:
    """A model's output as one tensor: a tensor; an embedding model's ``image_embeds`` /
    ``pooler_output`` (Hugging Face); else the first tensor of a tuple or output object (None if none)."""
    if output is None or isinstance(output, torch.Tensor):
        return output
    for key in ("image_embeds", "pooler_output"):
        v = output.get(key) if isinstance(output, dict) else None
        if isinstance(v, torch.Tensor):
            return v
    try:
        return first_tensor(output)
    except InputError:
        return None


def pool(out: torch.Tensor, layout: Layout, how: Pooling = "auto", *, model: nn.Module | None = None) -> torch.Tensor:
    """A pooled vector `[B, C]` of a layer output read as ``layout``.

    ``mean``: the mean over grid cells (patch tokens only, for tokens); ``cls``: the first prefix token;
    ``auto``: ``mean`` for maps, and for tokens the model's own choice where it states one (timm's
    ``global_pool``), else the CLS token when there is one, else the mean patch token.
    (``output``, the model's own output, is taken by `FeatureExtractor`, not here.)"""
    if layout.kind == "vector":
        return out
    if how == "auto":
        if not layout.is_tokens:
            how = "mean"
        else:
            gp = getattr(model, "global_pool", None) if model is not None else None
            how = "mean" if gp == "avg" or not layout.prefix_tokens else "cls"
    if how == "cls":
        if not layout.is_tokens or not layout.prefix_tokens:
            raise LayoutError(f"pooling 'cls' needs a tokens layout with a prefix token; this layer is {layout.describe()}: use pooling "
                              "'mean' (or 'output' for the model's own output)")
        tokens = out.transpose(0, 1) if layout.kind == "tokens_seq_first" else out
        return tokens[:, 0]
    if how != "mean":
        raise InputError(f"unknown pooling {how!r}; use 'auto', 'mean', 'cls' or 'output'")
    return to_grid(out, layout).flatten(2).mean(-1)
