"""Heatmap figures (matplotlib): images with maps blended on top, one column per method."""
from __future__ import annotations

from typing import Any

import torch

__all__ = ["plot_heatmaps", "plot_curves"]


def plot_heatmaps(images: torch.Tensor | None, maps: dict[str, torch.Tensor], *, targets: torch.Tensor | None = None,
                  class_names: list[str] | None = None, boxes: torch.Tensor | None = None,
                  notes: dict[str, list[str]] | None = None) -> Any:
    """A row per image: the image (with its box), then each method's map `[B, H, W]` over it.

    ``notes[method][b]`` is printed under that cell (e.g. its CH)."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    first = next(iter(maps.values()))
    b = first.shape[0]
    cols = len(maps) + (images is not None)
    fig, axes = plt.subplots(b, cols, figsize=(2.1 * cols, 2.15 * b + 0.3), squeeze=False, layout="constrained")
    for r in range(b):
        c0 = 0
        img = None if images is None else images[r].detach().float().cpu().clamp(0, 1).permute(1, 2, 0).numpy()
        if img is not None:
            ax = axes[r, 0]
            ax.imshow(img)
            name = "" if targets is None else (class_names[int(targets[r])] if class_names else f"class {int(targets[r])}")
            ax.set_title(name, fontsize=7)
            if boxes is not None:
                x0, y0, x1, y1 = boxes[r].tolist()
                ax.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, edgecolor="#4daf4a", linewidth=1.5))
            c0 = 1
        for k, (method, m) in enumerate(maps.items()):
            ax = axes[r, c0 + k]
            if img is not None:
                ax.imshow(img)
            heat = m[r].detach().float().cpu()
            heat = heat / heat.max() if float(heat.max()) > 0 else heat
            ax.imshow(heat.numpy(), cmap="jet", alpha=0.5 if img is not None else 1.0, vmin=0, vmax=1)
            if boxes is not None:
                x0, y0, x1, y1 = boxes[r].tolist()
                ax.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, edgecolor="white", linewidth=1.0, linestyle="--"))
            if r == 0:
                ax.set_title(method, fontsize=8)
            if notes and method in notes:
                ax.set_xlabel(notes[method][r], fontsize=7)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    return fig


def plot_curves(curves: dict[str, torch.Tensor], title: str = "") -> Any:
    """Mean insertion / deletion curves `[steps + 1]` per method."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.2, 3.0), layout="constrained")
    for name, c in curves.items():
        x = torch.linspace(0, 1, c.numel())
        ax.plot(x.numpy(), c.detach().cpu().numpy(), label=name)
    ax.set_xlabel("fraction of pixels inserted / deleted")
    ax.set_ylabel("probability of the clean top-1 class")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    return fig
