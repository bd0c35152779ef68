"""A compact ResNet-style CNN whose last stage is a 7x7 grid at 112 px input.

Module names follow torchvision's ResNet (``conv1``, ``bn1``, ``layer1`` ..
``layer4``, ``avgpool``, ``fc``) so the same layer names work for both. Input is
an image in [0, 1]; normalisation happens inside the model.
"""
from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.resnet import BasicBlock as TVBasicBlock

__all__ = ["SmallResNet", "BasicBlock"]


class BasicBlock(TVBasicBlock):
    """torchvision's ResNet BasicBlock (two 3x3 convolutions and a residual connection, with a
    projection when the shape changes). Subclassing it keeps attribute names and lets tools
    that know torchvision ResNets (e.g. zennit's ResNetCanonizer for LRP) handle this model."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        downsample = (
            nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
            if stride != 1 or cin != cout else None
        )
        super().__init__(cin, cout, stride=stride, downsample=downsample)


class SmallResNet(nn.Module):
    """Compact ResNet: 112 px -> layer1 56x56 -> layer2 28 -> layer3 14 -> layer4 7x7.

    Args:
        out_dim: classes (``head="classifier"``) or embedding size (``head="embedding"``).
        head: ``"classifier"`` returns logits `[B, out_dim]`; ``"embedding"`` returns
            L2-normalised embeddings `[B, out_dim]` compared by cosine.
        widths: channels of the four stages.
    """

    def __init__(self, out_dim: int, head: Literal["classifier", "embedding"] = "classifier",
                 widths: tuple[int, int, int, int] = (32, 64, 128, 256)) -> None:
        super().__init__()
        if head not in ("classifier", "embedding"):
            raise ValueError(f"head must be 'classifier' or 'embedding', got {head!r}")
        self.head, self.out_dim, self.widths = head, out_dim, tuple(widths)
        self.register_buffer("mean", torch.tensor([0.5, 0.5, 0.5]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor([0.25, 0.25, 0.25]).view(1, 3, 1, 1), persistent=False)
        w1, w2, w3, w4 = widths
        self.conv1 = nn.Conv2d(3, w1, 3, 2, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(w1)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = BasicBlock(w1, w1, 1)
        self.layer2 = BasicBlock(w1, w2, 2)
        self.layer3 = BasicBlock(w2, w3, 2)
        self.layer4 = BasicBlock(w3, w4, 2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(w4, out_dim)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The layer4 map `[B, widths[3], H/16, W/16]` of images `[B, 3, H, W]` in [0, 1]."""
        x = (x - self.mean) / self.std
        x = self.relu(self.bn1(self.conv1(x)))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.fc(torch.flatten(self.avgpool(self.forward_features(x)), 1))
        return F.normalize(x, dim=1) if self.head == "embedding" else x
