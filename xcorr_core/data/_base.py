"""Base of the in-memory synthetic data sets: uint8 images, float items in [0, 1]."""
from __future__ import annotations

import torch


class UInt8ImageDataset(torch.utils.data.Dataset):
    """Holds ``images`` uint8 `[N, 3, H, W]` and ``labels`` long `[N]`; items are ``(float image, label)``."""

    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.image(i), int(self.labels[i])

    def image(self, i: int) -> torch.Tensor:
        """Image ``i`` as float `[3, H, W]` in [0, 1]."""
        return self.images[i].float() / 255.0
