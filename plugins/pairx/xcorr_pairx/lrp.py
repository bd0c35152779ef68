"""LRP with zennit for a metric model compared by cosine: the composite (EpsilonPlus with the
right canonizer), the closed-form relevance seed, a context that captures one layer, and a
faster engine for zennit's rules.

Two engines apply a zennit composite (its canonizers and its module -> rule map):

- ``"zennit"``: zennit's own hooks. Each backward through a ruled layer recomputes the rule's
  modified forward (e.g. ZPlus's clamped convolutions) and differentiates through it, *and* the
  autograd engine still runs the layer's ordinary backward, whose result the hook discards;
  the hooks keep only the last forward's tensors.
- ``"cached"`` (`cached_lrp`): the same rules (zennit's own input/parameter/output modifiers,
  gradient mapper and reducer) attached as one autograd node per layer call that holds its
  input. The modified forward is built once, at the first backward, and reused by every later
  backward of that forward (LRP's backward is linear in the relevance once the forward is
  fixed); no ordinary layer backward runs; branches whose modified input is all zero (ZPlus's
  negative part after a ReLU) are skipped. Equal to zennit's attribution (tested), and it works
  under ``is_grads_batched``. Supports composites whose rules are `BasicHook`s or ``Pass``.
"""
from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

import xcorr_core as xc

__all__ = ["default_composite", "cosine_seed", "captured_forward", "cached_lrp", "supports_cached"]


def default_composite(model: nn.Module, canonizers: list[Any] | None = None) -> Any:
    """zennit's EpsilonPlus (ZPlus on convolutions, Epsilon on linear layers) with the canonizer the
    model needs: ``ResNetCanonizer`` for models built of torchvision ResNet blocks (also xcorr's
    SmallResNet), ``VGGCanonizer`` for torchvision VGG, `EfficientNetCanonizer` (the PAIR-X authors')
    for torchvision and timm EfficientNets, `ConservativePropagation` (Ali et al. 2022) for models with
    attention or LayerNorm (ViT, DeiT, DINOv2, CLIP, Swin, ConvNeXt), else a generic ``SequentialMergeBatchNorm`` — with a
    warning, since LRP through residual additions or gates it does not know is not the authors'.
    Pass ``canonizers`` for other architectures (no warning then)."""
    import torchvision
    from zennit.canonizers import SequentialMergeBatchNorm
    from zennit.composites import EpsilonPlus
    from zennit.torchvision import ResNetCanonizer, VGGCanonizer

    from .canonizers import EfficientNetCanonizer, is_efficientnet
    from .conservative import ConservativePropagation, has_transformer_blocks

    if canonizers is None and has_transformer_blocks(model):
        return ConservativePropagation()
    if canonizers is None:
        _check_lrp_rules(model)
        blocks = (torchvision.models.resnet.BasicBlock, torchvision.models.resnet.Bottleneck)
        if any(isinstance(m, blocks) for m in model.modules()):
            canonizers = [ResNetCanonizer()]
        elif isinstance(model, torchvision.models.VGG):
            canonizers = [VGGCanonizer()]
        elif is_efficientnet(model):
            canonizers = [EfficientNetCanonizer()]
        else:
            warnings.warn(f"PAIR-X has no canonizer for {type(model).__name__}: using zennit's generic "
                          "SequentialMergeBatchNorm, which leaves residual additions and gates to plain gradients; pass "
                          "canonizers=[...] for this architecture", UserWarning, stacklevel=2)
            canonizers = [SequentialMergeBatchNorm()]
    return EpsilonPlus(canonizers=canonizers)


#: layers with parameters that EpsilonPlus and the canonizers give a rule (BatchNorm is merged into its convolution)
_LRP_LAYERS = (nn.modules.conv._ConvNd, nn.Linear, nn.modules.batchnorm._BatchNorm)


def _check_lrp_rules(model: nn.Module) -> None:
    """Refuse a model with parametric layers that neither LRP's rules nor a canonizer cover (GroupNorm,
    recurrent or custom layers): their relevance would pass as a plain gradient, silently."""
    bare = sorted({type(m).__name__ for m in model.modules()
                   if not isinstance(m, _LRP_LAYERS) and any(True for _ in m.parameters(recurse=False))})
    if bare:
        raise xc.InputError(f"PAIR-X has no relevance rules for the layers {', '.join(bare)} of {type(model).__name__}: pass "
                            "composite= (a zennit composite whose rules and canonizers cover them, or "
                            "xcorr_pairx.ConservativePropagation() for gradient x input with attention and norm scales held "
                            "constant)")


def cosine_seed(ea: torch.Tensor, eb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """cos(ea, eb) and its gradients w.r.t. ``ea`` and ``eb`` `[D]`, in closed form:
    d cos / d ea = eb / (|ea| |eb|) - cos * ea / |ea|^2."""
    na, nb = ea.norm(), eb.norm()
    if float(na) == 0 or float(nb) == 0:
        raise xc.InputError("an embedding is zero; cosine similarity is undefined")
    cos = (ea @ eb) / (na * nb)
    return cos, eb / (na * nb) - cos * ea / na**2, ea / (na * nb) - cos * eb / nb**2


def _product_sum_rules() -> dict[type, tuple[float, ...]]:
    """zennit rules whose gradient mapper scales the output gradient elementwise by a function of
    the modified outputs (``out_grad / stabilize(...)``, Gamma's ``output * out_grad / ...``) and
    whose reducer is ``sum_k c_k * input_k * gradient_k``: rule type -> the c_k. Only exact types:
    a subclass may change either function."""
    from zennit.rules import Epsilon, Gamma, Norm, ZPlus

    return {Epsilon: (1.0,), Norm: (1.0,), ZPlus: (1.0, 1.0), Gamma: (1.0, 1.0, 1.0, 1.0, 0.0)}


class _RuleState:
    """One layer call: the rule, the module, its input; the modified forward once built.

    For the product-sum rules (`_product_sum_rules`: EpsilonPlus's ZPlus, Epsilon and Norm) the
    first backward also keeps each branch's scale ``gradient_mapper(1, outputs)`` (for ZPlus
    ``1 / stabilize(z+ + z-)``), so every backward is one multiply, the modified forward's
    input-gradient and one multiply per live branch — no stabiliser or division recomputed, no
    product with an all-zero branch. Other rules call zennit's mapper and reducer each time."""

    __slots__ = ("rule", "module", "x", "cache", "out", "fast", "sum_ratio")

    def __init__(self, rule: Any, module: nn.Module, x: torch.Tensor) -> None:
        self.rule, self.module, self.x, self.cache = rule, module, x, None
        self.out: torch.Tensor | None = None
        self.fast: list[tuple[int, torch.Tensor, float]] | None = None  # (branch, scale, coefficient) per live branch
        self.sum_ratio: torch.Tensor | None = None  # zennit's Sum under a single-branch rule: x * scale, unsqueezed

    def _build(self) -> None:
        from zennit.core import ParamMod

        rule = self.rule
        mods = list(zip(rule.input_modifiers, rule.param_modifiers, rule.output_modifiers))
        inputs = [in_mod(self.x).detach().requires_grad_() for in_mod, _, _ in mods]
        live = [k for k, i in enumerate(inputs) if bool(i.detach().any())]
        affine = isinstance(self.module, (nn.modules.conv._ConvNd, nn.Linear))
        outputs: list[torch.Tensor | None] = [None] * len(mods)
        for k in sorted(range(len(mods)), key=lambda k: k not in live):  # live branches first: they give the shape
            _, param_mod, out_mod = mods[k]
            with ParamMod.ensure(param_mod)(self.module) as modified, torch.enable_grad():
                shape = next((o.shape for o in outputs if o is not None), None)
                if k not in live and affine and shape is not None:
                    # an all-zero input: a convolution / linear layer gives its (modified) bias, no forward needed
                    bias = modified.bias.detach() if modified.bias is not None else None
                    out = self.x.new_zeros(shape)
                    if bias is not None:
                        out = out + (bias.view(-1, *[1] * (len(shape) - 2)) if isinstance(self.module, nn.modules.conv._ConvNd) else bias)
                    outputs[k] = out_mod(out)
                else:
                    outputs[k] = out_mod(modified.forward(inputs[k]))
        self.cache = (inputs, outputs, live)
        coefs = _product_sum_rules().get(type(rule))
        if coefs is not None and len(coefs) == len(inputs):
            with torch.no_grad():
                scales = rule.gradient_mapper(torch.ones_like(outputs[0]), [o.detach() for o in outputs])
            if isinstance(scales, torch.Tensor):
                scales = (scales,)
            self.fast = [(k, scales[k], coefs[k]) for k in live if coefs[k] != 0] or None  # none live: zennit's reducer
            from zennit.layer import Sum

            if self.fast is not None and len(inputs) == 1 and type(self.module) is Sum:
                # a residual addition: its input-gradient only expands, so relevance = grad (x) (x * scale) along dim
                dim = self.module.dim % self.x.dim()  # kept with the summed dim first: each branch's share is dense
                self.sum_ratio = (self.x * scales[0].unsqueeze(dim)).detach().movedim(dim, 0).contiguous()

    def relevance(self, grad: torch.Tensor) -> torch.Tensor:
        rule = self.rule
        if rule is None:  # Pass
            return grad
        if self.cache is None:
            self._build()
        inputs, outputs, live = self.cache
        if self.sum_ratio is not None:
            return (grad.unsqueeze(0) * self.sum_ratio).movedim(0, self.module.dim % self.x.dim())
        if self.fast is not None:
            grads = torch.autograd.grad([outputs[k] for k, _, _ in self.fast], [inputs[k] for k, _, _ in self.fast],
                                        grad_outputs=[grad * scale for _, scale, _ in self.fast], retain_graph=True)
            out = None
            for (k, _, c), g in zip(self.fast, grads):
                # a fresh, dense gradient is multiplied in place (no new buffer); an expanded one (Sum's) is not
                term = g.mul_(inputs[k].detach()) if g.is_contiguous() else g * inputs[k].detach()
                term = term if c == 1.0 else term.mul_(c)
                out = term if out is None else out.add_(term)
            return out
        gout = rule.gradient_mapper(grad, outputs)
        if isinstance(gout, torch.Tensor):
            gout = (gout,)
        grads = dict(zip(live, torch.autograd.grad([outputs[k] for k in live], [inputs[k] for k in live],
                                                   grad_outputs=[gout[k] for k in live], retain_graph=True))) if live else {}
        return rule.reducer(inputs, [grads[k] if k in grads else torch.zeros_like(i) for k, i in enumerate(inputs)])


class _RuleNode(torch.autograd.Function):
    """Forward: the layer's output (its own graph cut off). Backward: the rule's relevance for the input.

    The output is handed over through the state, not as an input of the function: returned as an
    input it would be a view, and a model that adds in place to it (EfficientNet's ``result += input``)
    would be refused by autograd."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, state: _RuleState) -> torch.Tensor:
        ctx.state = state
        out, state.out = state.out, None
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return ctx.state.relevance(grad), None


class _RuleHooks:
    def __init__(self, rule: Any) -> None:
        self.rule, self.stash = rule, None

    def pre(self, module: nn.Module, args: tuple) -> tuple | None:
        x = args[0] if args else None
        if not torch.is_grad_enabled() or not isinstance(x, torch.Tensor) or not x.requires_grad:
            self.stash = None
            return None
        self.stash = x
        if getattr(module, "inplace", False):  # keep the input intact for the rule
            return (x.clone(), *args[1:])
        return None

    def post(self, module: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor | None:
        x, self.stash = self.stash, None
        if x is None:
            return None
        state = _RuleState(self.rule, module, x.detach())
        state.out = output.detach()
        return _RuleNode.apply(x, state)


def _rule_map(model: nn.Module, composite: Any) -> list[tuple[nn.Module, Any]] | None:
    """(module, rule or None for Pass) for every ruled module, or None if a rule is not supported."""
    from zennit.core import BasicHook
    from zennit.rules import Pass

    if not callable(getattr(composite, "module_map", None)):
        return None
    ctx: dict = {}
    out = []
    for name, child in model.named_modules():
        t = composite.module_map(ctx, name, child)
        if t is None:
            continue
        if isinstance(t, BasicHook):
            out.append((child, t))
        elif type(t) is Pass:
            out.append((child, None))
        else:
            return None
    return out


def supports_cached(model: nn.Module, composite: Any) -> bool:
    """Whether `cached_lrp` can apply ``composite`` (every rule a zennit BasicHook or Pass)."""
    return _rule_map(model, composite) is not None


@contextlib.contextmanager
def cached_lrp(model: nn.Module, composite: Any) -> Iterator[nn.Module]:
    """Inside: ``model`` with ``composite``'s canonizers applied and its rules attached by the cached
    engine (see the module docstring). Everything is undone on exit, also on an exception."""
    from zennit.core import RemovableHandleList

    handles = RemovableHandleList()
    try:
        for canonizer in getattr(composite, "canonizers", None) or []:
            handles += canonizer.apply(model)
        rules = _rule_map(model, composite)  # after the canonizers: they add modules (e.g. ResNet's Sum)
        if rules is None:
            raise xc.InputError("the composite has rules the cached engine does not support; use engine='zennit'")
        for module, rule in rules:
            hooks = _RuleHooks(rule)
            handles.append(module.register_forward_pre_hook(hooks.pre))
            handles.append(module.register_forward_hook(hooks.post))
        yield model
    finally:
        handles.remove()


class _GridStore(dict):
    """``store["a"]``: the captured layer's last output as a grid `[B, C, h, w]` (any layout; see
    `xcorr_core.layouts.GridCapture`)."""

    def __init__(self, capture: Any) -> None:
        super().__init__()
        self.capture = capture

    def __getitem__(self, key: str) -> torch.Tensor:
        if key != "a" or self.capture.grid is None:
            raise KeyError(key)
        return self.capture.grid


@contextlib.contextmanager
def captured_forward(model: nn.Module, layer: str, composite: Any | None,
                     engine: str = "cached") -> Iterator[tuple[nn.Module, dict[str, torch.Tensor]]]:
    """Inside: the model with ``composite`` applied by ``engine`` (``"cached"`` or ``"zennit"``; a
    `ConservativePropagation` by its own context; plain when ``composite`` is None), and a mapping
    whose key ``"a"`` is the output of ``layer`` at the last forward, as a grid `[B, C, h, w]` whatever
    the layer's layout (tokens, channels-last). Every hook is removed on exit, also when an exception is raised; the
    model's train/eval mode is never changed."""
    modules = dict(model.named_modules())
    if layer not in modules or not layer:
        raise xc.LayerNotFoundError(f"model {type(model).__name__} has no layer {layer!r}; valid: {', '.join(xc.layer_names(model))}")
    if model.training:
        raise xc.InputError("put the model in eval mode (model.eval()) before explaining: LRP merges BatchNorm statistics")
    from xcorr_core.layouts import GridCapture

    from .conservative import ConservativePropagation

    store: _GridStore = _GridStore(GridCapture(model, layer))
    store.capture.__enter__()
    try:
        if isinstance(composite, ConservativePropagation):
            with composite.context(model) as modified:
                yield modified, store
        elif composite is None:
            yield model, store
        elif engine == "cached":
            with cached_lrp(model, composite) as modified:
                yield modified, store
        elif engine == "zennit":
            with composite.context(model) as modified:
                yield modified, store
        else:
            raise xc.InputError(f"engine must be 'cached' or 'zennit', got {engine!r}")
    finally:
        store.capture.__exit__()
