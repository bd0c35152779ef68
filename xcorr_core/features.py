"""`FeatureExtractor`: spatial maps and pooled vectors from named layers of any `nn.Module`.

The wrapped model is never modified: its train/eval mode is left as the user set
it, and the forward hooks it installs are removed when a call ends, even by an
exception. Depends on torch, tqdm and the core's results/validation modules.
"""
from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from .errors import ModelForwardError, InputError, LayerNotFoundError
from .results import Tensor, TensorModel
from .validation import check_tensor

__all__ = ["Features", "FeatureExtractor", "layer_names"]


class Features(TensorModel):
    """Activations of a batch.

    Attributes:
        maps: layer name -> activation as produced, `[B, C, H, W]` for conv layers.
        pooled: layer name -> global average over the spatial dims, `[B, C]`.
        output: the model's output `[B, ...]` when the forward ran to the end.
    """

    maps: dict[str, Tensor]
    pooled: dict[str, Tensor]
    output: Tensor | None = None

    def __len__(self) -> int:
        return next(iter(self.pooled.values())).shape[0] if self.pooled else 0


def layer_names(model: nn.Module) -> list[str]:
    """Every dotted module name of ``model`` that a `FeatureExtractor` accepts."""
    return [n for n, _ in model.named_modules() if n]


def _pool(t: torch.Tensor) -> torch.Tensor:
    return t.flatten(2).mean(-1) if t.ndim > 2 else t


class _Stop(Exception):
    """Raised inside a hook once every requested layer is captured."""


class FeatureExtractor:
    """Capture layers of ``model`` by dotted name.

    Args:
        model: any `nn.Module`; it is not changed (no `.eval()`, no lasting hooks).
        layers: dotted module names, e.g. ``["layer3", "layer4"]``.
        stop_early: end the forward pass as soon as every layer is captured
            (faster; then `Features.output` is None).
        grad: keep the autograd graph (for gradient-based explainers).

    Example:
        >>> fx = FeatureExtractor(torchvision.models.resnet50(), ["layer4"])
        >>> feats = fx(images)                  # images [B, 3, 224, 224]
        >>> feats.maps["layer4"].shape, feats.pooled["layer4"].shape
        (torch.Size([B, 2048, 7, 7]), torch.Size([B, 2048]))
    """

    def __init__(self, model: nn.Module, layers: Sequence[str], *, stop_early: bool = True, grad: bool = False) -> None:
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
        captured: dict[str, torch.Tensor] = {}
        stop = self.stop_early and not return_output
        wanted = len(self.layers)

        def make_hook(name: str):
            def hook(_m: nn.Module, _inp: Any, out: Any) -> None:
                if not isinstance(out, torch.Tensor):
                    raise InputError(f"layer {name!r} returns {type(out).__name__}, not a tensor")
                captured[name] = out
                if stop and len(captured) == wanted:
                    raise _Stop

            return hook

        handles = [m.register_forward_hook(make_hook(n)) for n, m in self._modules.items()]
        output = None
        try:
            with torch.set_grad_enabled(self.grad and torch.is_grad_enabled()):
                try:
                    output = self.model(images)
                except _Stop:
                    pass
                except RuntimeError as exc:
                    raise ModelForwardError(f"{type(self.model).__name__} failed on images {list(images.shape)} {images.dtype}: {exc}") from exc
        finally:
            for h in handles:
                h.remove()
        missing = [n for n in self.layers if n not in captured]
        if missing:
            raise InputError(f"layers {missing} were not executed by the model's forward pass")
        maps = {n: captured[n] for n in self.layers}
        pooled = {n: _pool(t) for n, t in maps.items()}
        for n, p in pooled.items():
            if not bool(torch.isfinite(p).all()):
                raise InputError(f"features of layer {n!r} contain NaN/inf (from NaN/inf in the images or inside the model)")
        return Features(
            maps=maps,
            pooled=pooled,
            output=output if return_output and isinstance(output, torch.Tensor) else None,
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
