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

Only a window's in-image cells are computed: query cells are grouped by how the borders clip their
windows (at 7x7 with radius 2, 25 groups; a corner cell's final window has 3x3 cells, the average
17.2 of 25). The current map's own forward (every intermediate) is recomputed once per applied edit.
For ResNet-50's tail at 7x7 this is about 56 M multiply-adds per candidate on average (72 M
unclipped) against 440 M for running g on the whole edited map.
Only this file's scorer reads the blocks' parameters; the model is never changed.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .chain import _modules_of

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


@dataclass
class _Window:
    """Query cells whose windows the borders clip alike (same shape at every radius), evaluated together.

    ``idx[r]`` `[m, ny_r * nx_r]`: flat indices of the in-image cells of each cell's radius-r window,
    row-major; ``shape[r]`` = (ny_r, nx_r); ``top[r]`` = (rows above, columns left of) the centre.
    """

    cells: torch.Tensor  # [m] flat query cells
    idx: list[torch.Tensor]
    shape: list[tuple[int, int]]
    top: list[tuple[int, int]]


def _windows(h: int, w: int, radius: int, device: torch.device) -> list[_Window]:
    """The query cells grouped by how the image's borders clip their windows (at most 5 x 5 groups)."""
    groups: dict[tuple, list[int]] = {}
    for y in range(h):
        for x in range(w):
            key = tuple((min(r, y), min(r, h - 1 - y), min(r, x), min(r, w - 1 - x)) for r in range(radius + 1))
            groups.setdefault(key, []).append(y * w + x)
    out = []
    for key, cells in groups.items():
        idx = []
        for up, down, left, right in key:
            rows = [[(c // w + dy) * w + c % w + dx for dy in range(-up, down + 1) for dx in range(-left, right + 1)] for c in cells]
            idx.append(torch.tensor(rows, device=device))
        out.append(_Window(torch.tensor(cells, device=device), idx, [(u + d + 1, l + r + 1) for u, d, l, r in key],
                           [(u, l) for u, _, l, _ in key]))
    return out


class _Local:
    """Scorer for the search (same interface as the others in `search`): the current map's forward
    kept, candidates evaluated on the in-image part of their windows (cells grouped by how the borders
    clip them, so a corner cell's 5x5 window costs its 3x3 in-image cells only)."""

    def __init__(self, tail: LocalTail, cur: torch.Tensor, dcells: torch.Tensor, grid: tuple[int, int], target: int,
                 chunk: int) -> None:
        self.tail, self.cur, self.dcells, self.target, self.chunk = tail, cur, dcells, target, chunk
        self.h, self.w = grid
        self.radius = tail.radius
        self.groups = _windows(self.h, self.w, self.radius, cur.device)
        self.group_of = torch.empty(self.h * self.w, dtype=torch.long, device=cur.device)
        self.pos_of = torch.empty_like(self.group_of)
        for k, grp in enumerate(self.groups):
            self.group_of[grp.cells] = k
            self.pos_of[grp.cells] = torch.arange(len(grp.cells), device=cur.device)
        self._forward_current()

    def _forward_current(self) -> None:
        """Every intermediate of the current map as cells `[h*w, C]`, and its logits."""
        x = self.cur.T.reshape(1, -1, self.h, self.w)

        def cells(t: torch.Tensor) -> torch.Tensor:  # [1, C, h, w] -> [h*w, C]
            return t[0].flatten(1).T.contiguous()

        self.base: list[dict[str, list[torch.Tensor] | torch.Tensor]] = []
        for block in self.tail.blocks:
            rec: dict = {"in": cells(x), "layer_in": [], "pre": []}
            v = x
            for layer in block:
                rec["layer_in"].append(cells(v))
                pre = F.conv2d(v, layer.conv_weight, layer.bias, padding=layer.conv_weight.shape[-1] // 2)
                rec["pre"].append(cells(pre))
                v = pre.relu() if layer.relu else pre
            x = (v + x).relu()
            self.base.append(rec)
        out = cells(x)
        self.window_sum = torch.empty_like(out)  # the current map's sum over every cell's final (in-image) window
        for grp in self.groups:
            self.window_sum[grp.cells] = out[grp.idx[self.radius]].sum(1)
        self.pooled = x[0].mean((1, 2))
        self.z = self.pooled @ self.tail.fc_w.T + (self.tail.fc_b if self.tail.fc_b is not None else 0)

    def _chunk_logits(self, grp: _Window, pos: torch.Tensor, j: torch.Tensor) -> torch.Tensor:
        """Logits `[B, classes]` of the candidates (query cell ``grp.cells[pos]``, distractor cell ``j``)."""
        n = len(pos)
        vals, r = self.dcells[j][:, None, :], 0  # [B, in-image cells of the radius-r window, C]
        for block, rec in zip(self.tail.blocks, self.base):
            x_in, r_in = vals, r
            for layer, base_in, base_pre in zip(block, rec["layer_in"], rec["pre"]):
                if layer.kind == "pw":
                    vals = torch.addmm(layer.bias, vals.flatten(0, 1), layer.weight).view(n, vals.shape[1], -1)
                else:
                    (ny, nx), (ty, tx) = grp.shape[r], grp.top[r]
                    delta = base_in[grp.idx[r][pos]].neg_().add_(vals)
                    prod = (delta.flatten(0, 1) @ layer.weight).view(n, ny, nx, 3, 3, -1)
                    r += 1
                    (my, mx), sy, sx = grp.shape[r], grp.top[r][0] - ty, grp.top[r][1] - tx
                    out = base_pre[grp.idx[r][pos]].view(n, my, mx, -1)  # a fresh gather: safe to add into
                    for a in range(3):  # input row u feeds output row u + a - 1 (+ sy: where the output window starts)
                        u0, u1 = max(0, 1 - a - sy), min(ny, my + 1 - a - sy)
                        for b in range(3):
                            v0, v1 = max(0, 1 - b - sx), min(nx, mx + 1 - b - sx)
                            if u1 > u0 and v1 > v0:
                                out[:, u0 + a - 1 + sy:u1 + a - 1 + sy, v0 + b - 1 + sx:v1 + b - 1 + sx] += prod[:, u0:u1, v0:v1, a, b]
                    vals = out.view(n, my * mx, -1)
                if layer.relu:
                    vals = vals.relu_()
            if r_in == r:
                skip = x_in
            else:
                skip = rec["in"][grp.idx[r][pos]]
                (my, mx), (ny, nx) = grp.shape[r], grp.shape[r_in]
                dy, dx = grp.top[r][0] - grp.top[r_in][0], grp.top[r][1] - grp.top[r_in][1]
                skip.view(n, my, mx, -1)[:, dy:dy + ny, dx:dx + nx] = x_in.view(n, ny, nx, -1)
            vals = skip.add_(vals).relu_()
        # the pooled change: the candidate's window sum minus that of the current map
        change = vals.sum(1) - self.window_sum[grp.cells[pos]]
        return self.z + change @ self.tail.fc_w.T / (self.h * self.w)

    def score(self, ci: torch.Tensor, cj: torch.Tensor) -> torch.Tensor:
        out = torch.empty(len(ci), dtype=self.cur.dtype, device=self.cur.device)
        group = self.group_of[ci]
        order = torch.argsort(group, stable=True)
        counts = torch.bincount(group, minlength=len(self.groups)).tolist()
        start = 0
        for grp, count in zip(self.groups, counts):
            for s in range(start, start + count, self.chunk):
                sel = order[s:min(s + self.chunk, start + count)]
                z = self._chunk_logits(grp, self.pos_of[ci[sel]], cj[sel])
                out[sel] = torch.log_softmax(z.float(), dim=1)[:, self.target].to(out.dtype)
            start += count
        return out

    def apply(self, i: int, j: int) -> torch.Tensor:
        self.cur[i] = self.dcells[j]
        self._forward_current()
        return self.z

    def bytes_per_candidate(self) -> int:
        """Peak working memory of one candidate in a chunk (an upper estimate: an unclipped window)."""
        cells = (2 * self.radius + 1) ** 2
        widest = max(max(layer.weight.shape[1] // (9 if layer.kind == "k3" else 1), layer.weight.shape[0])
                     for block in self.tail.blocks for layer in block)
        return cells * widest * self.cur.element_size() * 6 + 9 * cells * widest * self.cur.element_size()
