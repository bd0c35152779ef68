"""`FeatureExtractor`: spatial maps and pooled vectors from named layers of any `nn.Module`.

The wrapped model is never modified: its train/eval mode is left as the user set
it, and the forward hooks it installs are removed when a call ends, even by an
exception. Each layer's output is read as what it is (``xcorr_core.layouts``): channels-first or
channels-last maps, tokens with prefix tokens over a patch grid, or a Hugging Face output, and handed
on as a `[B, C, h, w]` grid of cells plus a pooled vector whose kind is a choice (mean of cells, CLS
token, the model's own output). Depends on torch, tqdm and the core's layouts/results/validation modules.
"""
from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from .errors import ModelForwardError, InputError, LayerNotFoundError
from .layouts import CapturedAll, GridCapture, Layout, LayoutError, Pooling, model_output, pool, prefix_of
from .results import Tensor, TensorModel
from .validation import check_tensor

__all__ = ["Features", "FeatureExtractor", "layer_names"]


class Features(TensorModel):
    """Activations of a batch.

    Attributes:
        maps: layer name -> cells `[B, C, h, w]` whatever the layer's layout (channels-last maps
            permuted, prefix tokens dropped and patch tokens laid on their grid); `[B, C]` for
            layers that output vectors.
        pooled: layer name -> `[B, C]`: the mean over cells, the CLS token or the model's output
            (the extractor's ``pooling``).
        output: the model's output `[B, ...]` when the forward ran to the end.
        layouts: layer name -> the `Layout` its output was read as.
        prefix: layer name -> its prefix tokens `[B, P, C]` (CLS, registers) for token layouts.
    """

    maps: dict[str, Tensor]
    pooled: dict[str, Tensor]
    output: Tensor | None = None
    layouts: dict[str, Layout] = {}
    prefix: dict[str, Tensor] = {}

    def __len__(self) -> int:
        return next(iter(self.pooled.values())).shape[0] if self.pooled else 0


def layer_names(model: nn.Module) -> list[str]:
    """Every dotted module name of ``model`` that a `FeatureExtractor` accepts."""
    return [n for n, _ in model.named_modules() if n]


class FeatureExtractor:
    """Capture layers of ``model`` by dotted name.

    Args:
        model: any `nn.Module`; it is not changed (no `.eval()`, no lasting hooks).
        layers: dotted module names, e.g. ``["layer3", "layer4"]``.
        stop_early: end the forward pass as soon as every layer is captured
            (faster; then `Features.output` is None).
        grad: keep the autograd graph (for gradient-based explainers).
        layout: how to read the layers' outputs: ``"auto"`` (detected, see `xcorr_core.layouts`), a
            `Layout` (or its dict) for every layer, or a dict layer name -> layout.
        pooling: ``"auto"`` (mean over cells for maps; for tokens the model's own choice, else CLS),
            ``"mean"``, ``"cls"``, or ``"output"`` (the model's own output, e.g. an embedding model's
            vector; runs the forward to the end).

    Example:
        >>> fx = FeatureExtractor(torchvision.models.resnet50(), ["layer4"])
        >>> feats = fx(images)                  # images [B, 3, 224, 224]
        >>> feats.maps["layer4"].shape, feats.pooled["layer4"].shape
        (torch.Size([B, 2048, 7, 7]), torch.Size([B, 2048]))
        >>> vit = timm.create_model("vit_small_patch16_224")   # tokens [B, 197, 384]
        >>> FeatureExtractor(vit, ["blocks.11"])(images).maps["blocks.11"].shape
        torch.Size([B, 384, 14, 14])
    """

    def __init__(self, model: nn.Module, layers: Sequence[str], *, stop_early: bool = True, grad: bool = False,
                 layout: str | Layout | dict[str, Any] = "auto", pooling: Pooling = "auto") -> None:
        if isinstance(layers, str):
            layers = [layers]
        if not layers:
            raise InputError("layers must name at least one module")
        modules = dict(model.named_modules())
        for name in layers:
            if name not in modules or not name:
                valid = layer_names(model)
                close = difflib.get_close_matches(name, valid, n=3)
                hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
                raise LayerNotFoundError(
                    f"model {type(model).__name__} has no layer {name!r}.{hint} Valid layer names: {', '.join(valid)}"
                )
        self.model = model
        self.layers = list(dict.fromkeys(layers))
        self.stop_early = stop_early
        self.grad = grad
        self._modules = {n: modules[n] for n in self.layers}
        if pooling not in ("auto", "mean", "cls", "output"):
            raise InputError(f"pooling must be 'auto', 'mean', 'cls' or 'output', got {pooling!r}")
        self.pooling: Pooling = pooling
        self._given = self._layouts(layout)
        self._detected: dict[tuple[Any, ...], Layout] = {}  # layouts detected so far (see GridCapture)

    def _layouts(self, layout: str | Layout | dict[str, Any]) -> dict[str, Layout]:
        """The given layout of each layer (kind ``auto`` where nothing is given)."""
        if isinstance(layout, str):
            return {n: Layout(kind=layout) for n in self.layers}  # type: ignore[arg-type]
        if isinstance(layout, Layout):
            return {n: layout for n in self.layers}
        if isinstance(layout, dict) and set(layout) <= set(self.layers) and all(isinstance(v, (dict, Layout, str)) for v in layout.values()) \
                and layout and not set(layout) & set(Layout.model_fields):
            out = {n: Layout() for n in self.layers}
            for n, v in layout.items():
                out[n] = v if isinstance(v, Layout) else Layout(kind=v) if isinstance(v, str) else Layout.model_validate(v)
            return out
        if isinstance(layout, dict):
            one = Layout.model_validate(layout)
            return {n: one for n in self.layers}
        raise InputError(f"layout must be 'auto', a Layout, or a dict, got {type(layout).__name__}")

    def _param_dtype(self) -> torch.dtype | None:
        p = next((p for p in self.model.parameters() if p.is_floating_point()), None)
        return p.dtype if p is not None else None

    def _param_device(self) -> torch.device | None:
        p = next(self.model.parameters(), None)
        return p.device if p is not None else None

    def __call__(self, images: torch.Tensor, *, return_output: bool = False) -> Features:
        """Run the model on ``images`` `[B, 3, H, W]` and return the captured layers."""
        # NaN/inf are checked on the (much smaller) pooled features below: they propagate there
        check_tensor("images", images, ndim=4, floating=True, non_empty=True)
        pdtype = self._param_dtype()
        if pdtype is not None and images.dtype != pdtype:
            images = images.to(pdtype)  # e.g. float64 images for a float32 model: converted, as documented
        if images.device.type == "meta":
            raise InputError("images are on the 'meta' device (shapes only, no data): move them to a real device")
        dev = self._param_device()
        if dev is not None and dev != images.device:
            raise InputError(f"images are on {images.device} but the model is on {dev}")
        want_output = return_output or self.pooling == "output"
        capture = GridCapture(self.model, self.layers, self._given, rebuild=self.grad and torch.is_grad_enabled(),
                              stop=self.stop_early and not want_output, cache=self._detected)
        output = None
        with capture, torch.set_grad_enabled(self.grad and torch.is_grad_enabled()):
            try:
                output = self.model(images)
            except CapturedAll:
                pass
            except RuntimeError as exc:
                raise ModelForwardError(f"{type(self.model).__name__} failed on images {list(images.shape)} {images.dtype}: {exc}") from exc
        raw, maps, layouts = capture.raw, capture.grids, capture.layouts
        missing = [n for n in self.layers if n not in maps]
        if missing:
            raise InputError(f"layers {missing} were not executed by the model's forward pass")
        maps = {n: maps[n] for n in self.layers}
        out_t = model_output(output) if want_output else None
        if self.pooling == "output":
            if out_t is None or out_t.ndim != 2:
                raise LayoutError(f"pooling 'output' needs the model to output vectors [B, D]; {type(self.model).__name__} gave "
                                  f"{type(output).__name__}{list(out_t.shape) if out_t is not None else ''}: use pooling 'cls' or 'mean'")
            pooled = {n: out_t for n in self.layers}
        else:
            pooled = {n: pool(raw[n], layouts[n], self.pooling, model=self.model) for n in self.layers}
        for n, p in pooled.items():
            if not bool(torch.isfinite(p).all()):
                raise InputError(f"features of layer {n!r} contain NaN/inf (from NaN/inf in the images or inside the model)")
        return Features(
            maps=maps,
            pooled=pooled,
            output=out_t if return_output else None,
            layouts={n: layouts[n] for n in self.layers},
            prefix={n: prefix_of(raw[n], layouts[n]) for n in self.layers if layouts[n].is_tokens},
        )

    def iter_batches(
        self,
        data: Any,
        *,
        batch_size: int = 64,
        device: torch.device | str | None = None,
        progress: bool | None = None,
        desc: str = "features",
        num_workers: int = 0,
        prepare: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> Iterator[tuple[int, Features]]:
        """Yield ``(start, features)`` for consecutive batches of ``data``.

        ``data`` is an image tensor `[N, 3, H, W]`, a Dataset whose items are
        images or ``(image, ...)`` tuples, or any iterable of such batches. ``prepare(images)``
        checks or converts each batch before the model sees it.
        """
        device = torch.device(device) if device is not None else (self._param_device() or torch.device("cpu"))
        start = 0
        batches, total = _batches(data, batch_size, num_workers)
        for batch in tqdm(batches, total=total, desc=desc, disable=(None if progress is None else not progress), leave=False):
            images = batch[0] if isinstance(batch, (tuple, list)) else batch
            if prepare is not None:
                images = prepare(images)
            feats = self(images.to(device))
            yield start, feats
            start += images.shape[0]

    def extract(self, data: Any, *, keep_maps: bool | Iterable[str] = True, map_dtype: torch.dtype | None = None, **kwargs: Any) -> Features:
        """Features of a whole data set, concatenated on the CPU.

        Args:
            data: see `iter_batches`.
            keep_maps: keep the spatial maps of all layers (True), none (False)
                or the named ones; pooled vectors are always kept.
            map_dtype: store kept maps in this dtype (e.g. float16) to save memory.
            **kwargs: passed to `iter_batches` (batch_size, device, progress, ...).
        """
        keep = set(self.layers) if keep_maps is True else set() if keep_maps is False else set(keep_maps)
        pooled: dict[str, list[torch.Tensor]] = {n: [] for n in self.layers}
        maps: dict[str, list[torch.Tensor]] = {n: [] for n in self.layers if n in keep}
        for _, f in self.iter_batches(data, **kwargs):
            for n in self.layers:
                pooled[n].append(f.pooled[n].detach().cpu())
                if n in maps:
                    m = f.maps[n].detach().cpu()
                    maps[n].append(m.to(map_dtype) if map_dtype is not None else m)
        if not any(pooled.values()):
            raise InputError("data is empty: no batch was produced")
        return Features(
            maps={n: torch.cat(v) for n, v in maps.items()},
            pooled={n: torch.cat(v) for n, v in pooled.items()},
        )


def _batches(data: Any, batch_size: int, num_workers: int) -> tuple[Iterable[Any], int | None]:
    if batch_size < 1:
        raise InputError(f"batch_size must be >= 1, got {batch_size}")
    if isinstance(data, torch.Tensor):
        check_tensor("data", data, ndim=4, floating=True)
        return list(data.split(batch_size)), None
    if isinstance(data, torch.utils.data.Dataset) and hasattr(data, "__len__"):
        loader = torch.utils.data.DataLoader(data, batch_size=batch_size, shuffle=False, num_workers=num_workers)
        return loader, len(loader)
    return data, (len(data) if hasattr(data, "__len__") else None)
