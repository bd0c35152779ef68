"""Exact scores for a residual tail, evaluated only where a cell replacement can reach.

g = stride-1 residual blocks (torchvision ``BasicBlock`` / ``Bottleneck`` with identity skips, e.g.
ResNet-50's ``layer4[1:]``, the paper's g) + global average pooling + linear. Replacing query cell
i changes a block's input at i alone; every 3x3 convolution widens the changed region by one cell
on each side, while 1x1 convolutions, BatchNorm, ReLU and the skip keep it. After two bottlenecks a
candidate differs from the current map in the 5x5 window around i at most, so each candidate
carries its values on that window only:

- 1x1 convolution (BatchNorm folded in) + ReLU: a matrix product on the window's cells;
- 3x3 convolution: the current map's pre-activation plus the effect of the window's change, one
  matrix product with the nine taps stacked followed by nine shifted adds (the window grows by one);
- the skip: the block's current input, overwritten by the candidate's window;
- pooling + linear: the current logits plus ``W (sum of the window's change) / hw``.

Cells outside the image carry no change (masked). The current map's own forward (every
intermediate, padded) is recomputed once per applied edit. For ResNet-50's tail at 7x7 this is
about 70 M multiply-adds per candidate against 440 M for running g on the whole edited map.
Only this file's scorer reads the blocks' parameters; the model is never changed.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["LocalTail", "local_tail_of"]


@dataclass
class _Layer:
    kind: str  # "pw" (1x1) or "k3" (3x3)
    weight: torch.Tensor  # pw: [Cin, Cout]; k3: [Cin, 9 * Cout], tap t = a * 3 + b is conv tap (2 - a, 2 - b)
    conv_weight: torch.Tensor  # [Cout, Cin, k, k], BatchNorm folded (for the current map's forward)
    bias: torch.Tensor  # [Cout]
    relu: bool


@dataclass
class LocalTail:
    """A recognised tail: blocks as lists of folded layers, then pooling + linear (``fc_w`` `[C, d]`)."""

    blocks: list[list[_Layer]]
    fc_w: torch.Tensor
    fc_b: torch.Tensor | None

    @property
    def radius(self) -> int:
        """How far (in cells) a single cell's change spreads through the tail."""
        return sum(layer.kind == "k3" for block in self.blocks for layer in block)


def _fold(conv: nn.Conv2d, bn: nn.BatchNorm2d, relu: bool) -> _Layer | None:
    k = conv.kernel_size
    if (conv.stride != (1, 1) or conv.groups != 1 or conv.dilation != (1, 1) or k not in ((1, 1), (3, 3))
            or conv.padding != ((k[0] - 1) // 2, (k[1] - 1) // 2) or conv.padding_mode != "zeros"):
        return None
    if type(bn) is not nn.BatchNorm2d or bn.running_mean is None or bn.running_var is None:
        return None
    with torch.no_grad():
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps) if bn.affine else 1 / torch.sqrt(bn.running_var + bn.eps)
        shift = (bn.bias if bn.affine else 0) - bn.running_mean * scale
        w = conv.weight * scale[:, None, None, None]
        b = (conv.bias * scale if conv.bias is not None else 0) + shift
        if k == (1, 1):
            return _Layer("pw", w[:, :, 0, 0].T.contiguous(), w, b, relu)
        taps = w.flip(2, 3).permute(1, 2, 3, 0)  # [Cin, 3, 3, Cout], tap (a, b) = conv tap (2 - a, 2 - b)
        return _Layer("k3", taps.reshape(w.shape[1], 9 * w.shape[0]).contiguous(), w, b, relu)


def _block_layers(block: nn.Module) -> list[_Layer] | None:
    from torchvision.models.resnet import BasicBlock, Bottleneck

    if type(block) not in (BasicBlock, Bottleneck) or block.downsample is not None or type(block.relu) is not nn.ReLU:
        return None
    if type(block) is BasicBlock:
        parts = [(block.conv1, block.bn1, True), (block.conv2, block.bn2, False)]
    else:
        parts = [(block.conv1, block.bn1, True), (block.conv2, block.bn2, True), (block.conv3, block.bn3, False)]
    layers = [_fold(c, b, r) if type(c) is nn.Conv2d else None for c, b, r in parts]
    if any(x is None for x in layers):
        return None
    return layers  # type: ignore[return-value]


def local_tail_of(g: nn.Module) -> LocalTail | None:
    """The `LocalTail` of ``g`` when it is residual blocks + pooling + linear (as `split_model` builds
    for a ResNet cut inside ``layer4``, or an ``nn.Sequential`` of the same parts), else None."""
    from .split import _modules_of

    mods = _modules_of(g)
    if not mods:
        return None
    mods = [m for m in mods if not isinstance(m, (nn.Flatten, nn.Identity, nn.Dropout))]
    if (len(mods) < 3 or not isinstance(mods[-2], nn.AdaptiveAvgPool2d) or mods[-2].output_size not in (1, (1, 1))
            or not isinstance(mods[-1], nn.Linear)):
        return None
    blocks = []
    for m in mods[:-2]:
        layers = _block_layers(m)
        if layers is None:
            return None
        blocks.append(layers)
    return LocalTail(blocks, mods[-1].weight.detach(), mods[-1].bias.detach() if mods[-1].bias is not None else None)


class _Local:
    """Scorer for the search (same interface as the others in `search`): the current map's forward
    kept padded, candidates evaluated on their windows."""

    def __init__(self, tail: LocalTail, cur: torch.Tensor, dcells: torch.Tensor, grid: tuple[int, int], target: int,
                 chunk: int) -> None:
        self.tail, self.cur, self.dcells, self.target, self.chunk = tail, cur, dcells, target, chunk
        self.h, self.w = grid
        self.pad = tail.radius
        dev = cur.device
        hp, wp = self.h + 2 * self.pad, self.w + 2 * self.pad
        ys, xs = torch.meshgrid(torch.arange(self.h, device=dev), torch.arange(self.w, device=dev), indexing="ij")
        ys, xs = ys.flatten() + self.pad, xs.flatten() + self.pad  # cell centres in padded coordinates
        self.idx, self.mask = [], []
        for r in range(self.pad + 1):  # windows of radius r around every cell: padded flat indices, in-image mask
            off = torch.arange(-r, r + 1, device=dev)
            wy = (ys[:, None, None] + off[None, :, None]).expand(-1, 2 * r + 1, 2 * r + 1)
            wx = (xs[:, None, None] + off[None, None, :]).expand(-1, 2 * r + 1, 2 * r + 1)
            self.idx.append((wy * wp + wx).reshape(len(ys), -1))
            inside = (wy >= self.pad) & (wy < self.pad + self.h) & (wx >= self.pad) & (wx < self.pad + self.w)
            self.mask.append(inside.reshape(len(ys), -1).to(cur.dtype))
        self._hp, self._wp = hp, wp
        self._forward_current()

    def _padded(self, x: torch.Tensor) -> torch.Tensor:
        """`[C, h, w]` -> padded cells `[(h+2p)*(w+2p), C]`."""
        return F.pad(x, (self.pad,) * 4).flatten(1).T.contiguous()

    def _forward_current(self) -> None:
        """Every intermediate of the current map, padded, and its logits."""
        x = self.cur.T.reshape(1, -1, self.h, self.w)
        self.base: list[dict[str, list[torch.Tensor] | torch.Tensor]] = []
        for block in self.tail.blocks:
            rec: dict = {"in": self._padded(x[0]), "layer_in": [], "pre": []}
            v = x
            for layer in block:
                rec["layer_in"].append(self._padded(v[0]))
                pre = F.conv2d(v, layer.conv_weight, layer.bias, padding=layer.conv_weight.shape[-1] // 2)
                rec["pre"].append(self._padded(pre[0]))
                v = pre.relu() if layer.relu else pre
            x = (v + x).relu()
            self.base.append(rec)
        out = self._padded(x[0])
        r = self.pad  # the current map's in-image sum over every cell's final window
        self.window_sum = torch.bmm(self.mask[r][:, None, :], out[self.idx[r]])[:, 0]
        self.pooled = x[0].mean((1, 2))
        self.z = self.pooled @ self.tail.fc_w.T + (self.tail.fc_b if self.tail.fc_b is not None else 0)

    def _chunk_logits(self, i: torch.Tensor, j: torch.Tensor) -> torch.Tensor:
        n = len(i)
        vals, r = self.dcells[j][:, None, :], 0  # [B, cells of the radius-r window, C]
        for block, rec in zip(self.tail.blocks, self.base):
            x_in, r_in = vals, r
            for layer, base_in, base_pre in zip(block, rec["layer_in"], rec["pre"]):
                if layer.kind == "pw":
                    vals = torch.addmm(layer.bias, vals.flatten(0, 1), layer.weight).view(n, vals.shape[1], -1)
                else:
                    side = 2 * r + 1
                    delta = base_in[self.idx[r][i]].neg_().add_(vals).mul_(self.mask[r][i][..., None])
                    prod = (delta.flatten(0, 1) @ layer.weight).view(n, side, side, 3, 3, -1)
                    r += 1
                    out = base_pre[self.idx[r][i]].view(n, side + 2, side + 2, -1)  # a fresh gather: safe to add into
                    for a in range(3):
                        for b in range(3):
                            out[:, a:a + side, b:b + side] += prod[:, :, :, a, b]
                    vals = out.view(n, (side + 2) ** 2, -1)
                if layer.relu:
                    vals = vals.relu_()
            skip = rec["in"][self.idx[r][i]]
            if r_in == r:
                skip = x_in
            else:
                side, s_in, d = 2 * r + 1, 2 * r_in + 1, r - r_in
                skip.view(n, side, side, -1)[:, d:d + s_in, d:d + s_in] = x_in.view(n, s_in, s_in, -1)
            vals = skip.add_(vals).relu_()
        # the pooled change: in-image window sum of the candidate minus that of the current map
        change = torch.bmm(self.mask[r][i][:, None, :], vals)[:, 0] - self.window_sum[i]
        return self.z + change @ self.tail.fc_w.T / (self.h * self.w)

    def score(self, ci: torch.Tensor, cj: torch.Tensor) -> torch.Tensor:
        out = torch.empty(len(ci), dtype=self.cur.dtype, device=self.cur.device)
        for s in range(0, len(ci), self.chunk):
            z = self._chunk_logits(ci[s:s + self.chunk], cj[s:s + self.chunk])
            out[s:s + self.chunk] = torch.log_softmax(z.float(), dim=1)[:, self.target].to(out.dtype)
        return out

    def apply(self, i: int, j: int) -> torch.Tensor:
        self.cur[i] = self.dcells[j]
        self._forward_current()
        return self.z

    def bytes_per_candidate(self) -> int:
        """Peak working memory of one candidate in a chunk (an upper estimate)."""
        cells = (2 * self.pad + 1) ** 2
        widest = max(max(layer.weight.shape[1] // (9 if layer.kind == "k3" else 1), layer.weight.shape[0])
                     for block in self.tail.blocks for layer in block)
        return cells * widest * self.cur.element_size() * 6 + 9 * cells * widest * self.cur.element_size()
