"""The counterfactual figure: the query and the distractors that supplied cells, edited cells outlined
and numbered by edit order (same colour on both sides), every other cell dimmed."""
from __future__ import annotations

from typing import Any, Sequence

import torch
from matplotlib import pyplot as plt
from matplotlib.figure import Figure

from xcorr_core.viz import PAIR_COLORS, cell_box

__all__ = ["plot_counterfactual", "dim_outside"]


def dim_outside(image: torch.Tensor, cells: Sequence[int], grid: tuple[int, int], strength: float = 0.65) -> torch.Tensor:
    """`[3, H, W]` image blended towards white except on ``cells`` (row-major indices of ``grid``)."""
    h, w = image.shape[-2:]
    keep = torch.zeros(grid[0] * grid[1], dtype=torch.bool)
    if len(cells):
        keep[torch.as_tensor(list(cells))] = True
    mask = torch.nn.functional.interpolate(keep.view(1, 1, *grid).float(), size=(h, w), mode="nearest")[0]
    return image * (mask + (1 - mask) * (1 - strength)) + (1 - mask) * strength


def plot_counterfactual(cf: Any, query_image: torch.Tensor | None, distractor_images: torch.Tensor | None,
                        class_names: Sequence[str] | None = None, max_distractors: int = 4, title: str | None = None) -> Figure:
    """Query (left) and up to ``max_distractors`` distractors that supplied cells (by first use)."""
    name = (lambda k: class_names[k] if class_names is not None and 0 <= k < len(class_names) else f"class {k}")
    used: list[int] = []
    for e in cf.edits:
        if e.distractor not in used:
            used.append(e.distractor)
    shown = used[:max_distractors] or [0]
    fig, axes = plt.subplots(1, 1 + len(shown), figsize=(2.6 * (1 + len(shown)), 3.1), squeeze=False)
    axes = axes[0]
    size = cf.image_size
    qcells = [e.query_cell for e in cf.edits]
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    if query_image is not None:
        axes[0].imshow(dim_outside(query_image.float().cpu(), qcells, cf.grid).clamp(0, 1).permute(1, 2, 0).numpy())
    p0, p1 = cf.prob_target[0], cf.prob_target[-1]
    axes[0].set_title(f"query: {name(cf.query_class)}\np({name(cf.target_class)}) {p0:.2f} -> {p1:.2f}", fontsize=8)
    for k, e in enumerate(cf.edits):
        color = PAIR_COLORS[k % len(PAIR_COLORS)]
        cell_box(axes[0], e.query_cell, cf.grid, size, color, str(k + 1))
        if e.distractor in shown:
            cell_box(axes[1 + shown.index(e.distractor)], e.distractor_cell, cf.grid, size, color, str(k + 1))
    for col, d in enumerate(shown, start=1):
        if distractor_images is not None and d < len(distractor_images):
            cells = [e.distractor_cell for e in cf.edits if e.distractor == d]
            axes[col].imshow(dim_outside(distractor_images[d].float().cpu(), cells, cf.grid).clamp(0, 1).permute(1, 2, 0).numpy())
        did = cf.distractor_ids[d] if cf.distractor_ids else d
        axes[col].set_title(f"distractor {did}: {name(cf.target_class)}", fontsize=8)
    status = f"{cf.num_edits} edit{'s' if cf.num_edits != 1 else ''}, " + ("decision flipped" if cf.success else f"FAILED ({cf.reason})")
    fig.suptitle(title or f"{cf.method}: {status}", fontsize=9)
    fig.tight_layout()
    return fig
