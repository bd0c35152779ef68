"""The authors' CHMNet checkpoints (juhongm999/chm; CHM-Corr's ``pas_psi.pt``).

Their backbone is a two-stream ResNet-101: every convolution is grouped (groups = 2) with
doubled channels, the input is ``concat(src, trg)`` on channels (6), and the first half of
the channels is the source stream. Fine-tuning lets the two streams diverge, so both are
kept as they are in the file. Matching uses layer3 (1024 x 15 x 15 at 240 px); layer4 and
fc are stored in their files and loaded, but not run.

`load_authors_checkpoint` reads such a state dict with ``torch.load(weights_only=True)``
(no pickle code runs) and checks every key and shape; the model takes ImageNet-normalised
240 x 240 images, as theirs. No download: you give the path.
Depends on torch, the core's file reading and `chmnet`.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from xcorr_core.errors import IndexFileError
from xcorr_core.models import check_state_dict, read_state_dict

from .chmnet import CHMNet
from .kernels import KernelType, kernel_groups, scale_groups

__all__ = ["TwoStreamResNet", "authors_chmnet", "load_authors_checkpoint", "AUTHORS_IMAGE_SIZE"]

AUTHORS_IMAGE_SIZE = 240


def _conv(cin: int, cout: int, k: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2, groups=2, bias=False)


class _Bottleneck(nn.Module):
    """ResNet bottleneck with grouped (two-stream) convolutions; attribute names as torchvision's."""

    def __init__(self, cin: int, width: int, stride: int, downsample: nn.Module | None) -> None:
        super().__init__()
        self.conv1, self.bn1 = _conv(cin, width, 1), nn.BatchNorm2d(width)
        self.conv2, self.bn2 = _conv(width, width, 3, stride), nn.BatchNorm2d(width)
        self.conv3, self.bn3 = _conv(width, width * 4, 1), nn.BatchNorm2d(width * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + (self.downsample(x) if self.downsample is not None else x))


class TwoStreamResNet(nn.Module):
    """Two ResNets in one (grouped convolutions over concatenated channels), matched at ``layer3``.

    ``forward_pair(src, trg)`` -> ``(src_feat, trg_feat)`` `[B, 1024, H/16, W/16]` for ResNet-101.
    """

    def __init__(self, blocks: tuple[int, int, int, int] = (3, 4, 23, 3), match_layer: int = 3) -> None:
        super().__init__()
        self.match_layer = match_layer
        self.conv1 = nn.Conv2d(6, 128, 7, stride=2, padding=3, groups=2, bias=False)
        self.bn1 = nn.BatchNorm2d(128)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        cin = 128
        for i, (n, width) in enumerate(zip(blocks, (128, 256, 512, 1024)), start=1):
            stride = 1 if i == 1 else 2
            down = nn.Sequential(_conv(cin, width * 4, 1, stride), nn.BatchNorm2d(width * 4))
            layers = [_Bottleneck(cin, width, stride, down)] + [_Bottleneck(width * 4, width, 1, None) for _ in range(n - 1)]
            setattr(self, f"layer{i}", nn.Sequential(*layers))
            cin = width * 4
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin // 2, 1000)  # stored in the authors' files, never run

    def forward_pair(self, src: torch.Tensor, trg: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(src_feat, trg_feat)`` of image pairs; ``src`` may be one image `[1, 3, H, W]` against B
        targets, and then (in eval mode) its stream runs once instead of once per pair."""
        if src.shape[0] == 1 and trg.shape[0] > 1 and not self.training:
            fs = self.stream(src, 0)
            return fs.expand(trg.shape[0], -1, -1, -1), self.stream(trg, 1)
        if src.shape[0] != trg.shape[0]:
            src = src.expand(trg.shape[0], -1, -1, -1)
        x = self.maxpool(self.relu(self.bn1(self.conv1(torch.cat([src, trg], dim=1)))))
        for i in range(1, self.match_layer + 1):
            x = getattr(self, f"layer{i}")(x)
        half = x.shape[1] // 2
        return x[:, :half], x[:, half:]

    def stream(self, x: torch.Tensor, which: int) -> torch.Tensor:
        """One stream alone (0 = source, 1 = target) with the halves of the grouped weights, in
        eval mode: the same features as `forward_pair` gives that image, without the other."""

        def conv(m: nn.Conv2d, t: torch.Tensor) -> torch.Tensor:
            half = m.weight.shape[0] // 2
            return F.conv2d(t, m.weight[which * half:(which + 1) * half], None, m.stride, m.padding)

        def bn(m: nn.BatchNorm2d, t: torch.Tensor) -> torch.Tensor:
            h = m.num_features // 2
            sl = slice(which * h, (which + 1) * h)
            return F.batch_norm(t, m.running_mean[sl], m.running_var[sl], m.weight[sl], m.bias[sl], False, 0.0, m.eps)

        x = self.maxpool(F.relu(bn(self.bn1, conv(self.conv1, x))))
        for i in range(1, self.match_layer + 1):
            for blk in getattr(self, f"layer{i}"):
                out = F.relu(bn(blk.bn1, conv(blk.conv1, x)))
                out = F.relu(bn(blk.bn2, conv(blk.conv2, out)))
                out = bn(blk.bn3, conv(blk.conv3, out))
                skip = bn(blk.downsample[1], conv(blk.downsample[0], x)) if blk.downsample is not None else x
                x = F.relu(out + skip)
        return x


def authors_chmnet(ktype: KernelType = "psi") -> CHMNet:
    """An authors'-architecture CHMNet (two-stream ResNet-101 at layer3, 1024 channels) with
    random weights, in eval mode. Its state dict has the authors' key names and shapes."""
    return CHMNet(TwoStreamResNet(), None, 1024, ktype=ktype).eval()


def _infer_ktype(state: dict[str, torch.Tensor], path: Path) -> KernelType:
    params = sorted(k for k in state if k.startswith("learner.chm6d.param."))
    for ktype in ("psi", "iso"):
        n = kernel_groups(5, ktype)[1]  # type: ignore[arg-type]
        if len(params) == len(scale_groups(ktype)) and all(tuple(state[k].shape) == (n,) for k in params):  # type: ignore[arg-type]
            return ktype  # type: ignore[return-value]
    shapes = {k: list(state[k].shape) for k in params} or "none"
    raise IndexFileError(f"{path}: learner.chm6d.param.* ({shapes}) is neither the 'psi' (4 x [55]) nor the 'iso' (3 x [15]) layout")


def load_authors_checkpoint(path: str | Path, *, map_location: str | torch.device = "cpu") -> CHMNet:
    """A CHMNet from the authors' state dict (e.g. ``pas_psi.pt``), in eval mode.

    The file is read with ``weights_only=True``. Missing or unexpected keys, and keys of the
    wrong shape, raise `IndexFileError` naming them. The model takes ImageNet-normalised
    images (the authors use 240 x 240) and transfers as their code does: use
    ``model.transfer(src, tgt, points)``.
    """
    path = Path(path)
    state = check_state_dict(read_state_dict(path), path)
    state = {k.removeprefix("module."): v for k, v in state.items()}
    model = authors_chmnet(_infer_ktype(state, path))
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        def show(keys: list[str]) -> str:
            return ", ".join(keys[:8]) + (f" (+{len(keys) - 8} more)" if len(keys) > 8 else "")
        raise IndexFileError(f"{path} is not an authors' CHMNet state dict: missing keys [{show(missing)}], "
                             f"unexpected keys [{show(unexpected)}]")
    wrong = [f"{k} {list(state[k].shape)} (expected {list(v.shape)})" for k, v in expected.items() if state[k].shape != v.shape]
    if wrong:
        raise IndexFileError(f"{path}: keys of the wrong shape: {'; '.join(wrong[:8])}")
    model.load_state_dict({k: v.to(expected[k].dtype) for k, v in state.items()})
    return model.to(map_location).eval()
