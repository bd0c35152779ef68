"""The ProtoKNN explanation figure (matplotlib): a row per top prototype."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from xcorr_core.viz import PAIR_COLORS, cell_box

__all__ = ["plot_protoknn"]


def plot_protoknn(exp: Any, images: Callable[[int], torch.Tensor] | None, query: torch.Tensor | None,
                  class_names: list[str] | None = None, target: int | None = None) -> Any:
    import matplotlib.pyplot as plt

    name = (lambda c: class_names[c] if class_names and 0 <= c < len(class_names) else str(c))
    rows = int(exp.top.numel())
    fig, axes = plt.subplots(rows, 4, figsize=(9.2, 2.45 * rows + 0.5), squeeze=False, layout="constrained")
    truth = "" if target is None else f" (true: {name(target)})"
    heads = ["prototype\n(source patch)", f"query: predicted\n{name(exp.prediction)}{truth}",  # two lines: a column is narrow
             f"this looks like it:\n#{exp.positive_id} ({name(exp.prediction)})",
             f"rather than that:\n#{exp.negative_id} ({name(exp.contrast_class)})"]
    for r in range(rows):
        col = PAIR_COLORS[r % len(PAIR_COLORS)]
        shown = [(images(int(exp.source_ids[r])) if images else None, int(exp.source_cells[r])),
                 (query, int(exp.query_cells[r])),
                 (images(exp.positive_id) if images else None, int(exp.positive_cells[r])),
                 (images(exp.negative_id) if images else None, int(exp.negative_cells[r]))]
        for c, (img, cell) in enumerate(shown):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            if img is None:
                continue
            ax.imshow(img.detach().float().cpu().clamp(0, 1).permute(1, 2, 0).numpy())
            cell_box(ax, cell, exp.grid, tuple(img.shape[-2:]), col, f"P{int(exp.top[r])}")
            if r == 0:
                ax.set_title(heads[c], fontsize=8)
        axes[r][0].set_ylabel(f"prototype {int(exp.top[r])}\ndelta {float(exp.contributions[exp.top[r]]):+.3f}", fontsize=8)
    verdict = "" if target is None else (" — correct" if target == exp.prediction else " — WRONG")
    fig.suptitle(f"ProtoKNN{verdict}: d_an² − d_ap² = {exp.difference:.3f} (top {rows} prototypes shown)", fontsize=10,
                 color="black" if target is None else ("green" if target == exp.prediction else "#c00"))
    return fig
