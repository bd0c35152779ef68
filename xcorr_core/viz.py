"""Figures (matplotlib, Agg backend): explanations, data samples, accuracy charts.

Every function returns a `matplotlib.figure.Figure`; `save_figure` writes PNGs atomically.
Figures read results by duck typing (a `NeighbourExplanation`, `RunResult`s) and import no other
core module than `fileio`, so results may import their figures without an import circle.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

from .fileio import atomic_write  # noqa: E402

__all__ = ["plot_neighbour_explanation", "plot_accuracy", "plot_bird_samples", "plot_herd_pair", "save_figure", "PAIR_COLORS", "cell_box"]

PAIR_COLORS = ["#e41a1c", "#377eb8", "#4daf4a", "#ff7f00", "#984ea3", "#a65628", "#f781bf", "#999999"]


def _show(ax: Any, img: torch.Tensor | None, title: str = "", color: str = "black") -> None:
    ax.set_xticks([])
    ax.set_yticks([])
    if img is not None:
        ax.imshow(img.detach().float().cpu().clamp(0, 1).permute(1, 2, 0).numpy())
    ax.set_title(title, fontsize=8, color=color)


def cell_box(ax: Any, idx: int, grid: tuple[int, int], size: tuple[int, int], color: str, label: str | None = None) -> None:
    """Outline cell ``idx`` (row-major in ``grid``) of an image of ``size`` `(H, W)` on ``ax``, with an optional label."""
    gh, gw = grid
    h, w = size
    r, c = divmod(int(idx), gw)
    ch, cw = h / gh, w / gw
    ax.add_patch(Rectangle((c * cw - 0.5, r * ch - 0.5), cw, ch, fill=False, edgecolor=color, linewidth=1.8))
    if label:
        ax.text(c * cw + 1, r * ch + 1, label, color="white", fontsize=6, va="top", bbox={"facecolor": color, "pad": 0.5, "linewidth": 0})


def plot_neighbour_explanation(exp: Any, images: Callable[[int], torch.Tensor] | None = None,
                               query: torch.Tensor | None = None, class_names: Sequence[str] | None = None,
                               target: int | None = None, boxes: bool = True) -> Figure:
    """The paper's nearest-neighbour explanation: the query, then up to 5 support images of the
    predicted class.

    With a re-ranker's patch pairs (and ``boxes``), each column shows one support image
    (bottom) under a copy of the query (top); numbered boxes of one colour mark a scored
    pair on both, labelled with its weight (flow). Without pairs, one row.
    """
    m = int(exp.support_ids.numel())
    cols = max(m, 1)
    name = (lambda c: class_names[c] if class_names and c is not None and 0 <= c < len(class_names) else str(c))
    ok = None if target is None else target == exp.prediction
    head = f"query (true: {name(target)})" if target is not None else "query"
    pairs_on = boxes and exp.patch_pairs is not None and exp.grid is not None and query is not None
    if pairs_on:
        fig, axes = plt.subplots(2, cols, figsize=(2.3 * cols, 5.0), squeeze=False, layout="constrained")
        size = tuple(query.shape[-2:])
        for j in range(m):
            _show(axes[0][j], query, head if j == 0 else "query")
            img = images(int(exp.support_ids[j])) if images is not None else None
            _show(axes[1][j], img, f"#{int(exp.support_ranks[j]) + 1} of {exp.k}, score {float(exp.support_scores[j]):.3f}")
            for l, (qi, ci) in enumerate(exp.patch_pairs[j].tolist()):
                col = PAIR_COLORS[l % len(PAIR_COLORS)]
                cell_box(axes[0][j], qi, exp.grid, size, col, str(l + 1))
                cell_box(axes[1][j], ci, exp.grid, size, col, str(l + 1))
            if exp.patch_weights is not None:
                ws = " ".join(f"{l + 1}:{float(w):.3f}" for l, w in enumerate(exp.patch_weights[j].tolist()))
                axes[1][j].set_xlabel(f"weights {ws}", fontsize=6)
        if m == 0:
            _show(axes[0][0], query, head)
            _show(axes[1][0], None, "no support image")
    else:
        fig, axes = plt.subplots(1, 1 + cols, figsize=(1.9 * (1 + cols), 2.35), squeeze=False)
        axes = axes[0]
        _show(axes[0], query, head)
        for j in range(m):
            img = images(int(exp.support_ids[j])) if images is not None else None
            _show(axes[1 + j], img, f"#{int(exp.support_ranks[j]) + 1} of {exp.k}, score {float(exp.support_scores[j]):.3f}")
        if m == 0:
            _show(axes[1], None, "no support image")
    verdict = "" if ok is None else (" — correct" if ok else " — WRONG")
    conf = f", confidence {exp.confidence:.0%}" if exp.confidence is not None else ""
    by = exp.meta.get("decided_by", exp.method)
    how = f" (explanation: {exp.method})" if by != exp.method else ""
    fig.suptitle(f"{by}: predicted {name(exp.prediction)}{conf}{verdict}{how}", fontsize=10,
                 color="black" if ok is None else ("#1a7f37" if ok else "#cf222e"))
    if not pairs_on:
        fig.tight_layout()
    return fig


def plot_accuracy(results: Sequence[Any], metric: str = "top1_accuracy") -> Figure:
    """Grouped bars: one group per data set, one bar per method, with the metric's CI as error bars."""
    methods = list(dict.fromkeys(m for r in results for m in r.methods))
    fig, ax = plt.subplots(figsize=(1.6 + 1.4 * len(results) * max(1, len(methods)) * 0.6, 3.2))
    width = 0.8 / max(1, len(methods))
    for j, method in enumerate(methods):
        xs, ys, lo, hi = [], [], [], []
        for i, r in enumerate(results):
            mr = r.methods.get(method)
            if mr is None or metric not in mr.metrics:
                continue
            res = mr.metrics[metric]
            xs.append(i + (j - (len(methods) - 1) / 2) * width)
            ys.append(res.value)
            lo.append(res.value - (res.ci[0] if res.ci else res.value))
            hi.append((res.ci[1] if res.ci else res.value) - res.value)
        bars = ax.bar(xs, ys, width * 0.95, yerr=[lo, hi], capsize=3, label=method, color=PAIR_COLORS[j % len(PAIR_COLORS)])
        ax.bar_label(bars, labels=[f"{y:.1%}" for y in ys], fontsize=7, padding=2)
    ax.set_xticks(range(len(results)), [f"{r.dataset}\n(n={r.n})" for r in results])
    ax.set_ylim(0, 1.08)
    ax.set_ylabel(metric.replace("_", " "))
    ax.legend(fontsize=8, loc="lower left")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig


def plot_bird_samples(dataset: Any, indices: Sequence[int], part_names: Sequence[str]) -> Figure:
    """SynthBirds images with their part keypoints (visible: dots; hidden: crosses) and boxes."""
    n = len(indices)
    fig, axes = plt.subplots(1, n, figsize=(2.1 * n, 2.6), squeeze=False)
    cmap = plt.get_cmap("tab10")
    for ax, i in zip(axes[0], indices):
        _show(ax, dataset.image(i), dataset.class_names[int(dataset.labels[i])])
        x0, y0, x1, y1 = dataset.boxes[i].tolist()
        ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor="white", linestyle="--", linewidth=1))
        for p, (x, y, v) in enumerate(dataset.keypoints[i].tolist()):
            ax.scatter([x], [y], s=14, color=cmap(p % 10), marker="o" if v else "x", edgecolors="black" if v else None, linewidths=0.5)
    handles = [plt.Line2D([], [], marker="o", linestyle="", color=cmap(p % 10), label=nm) for p, nm in enumerate(part_names)]
    fig.legend(handles=handles, loc="lower center", ncol=min(10, len(part_names)), fontsize=7, frameon=False)
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    return fig


def plot_herd_pair(img_a: torch.Tensor, img_b: torch.Tensor, pts_a: torch.Tensor, pts_b: torch.Tensor, title: str = "") -> Figure:
    """Two photos side by side with lines joining corresponding points `[n, 2]` (pixel x, y)."""
    w = img_a.shape[-1]
    fig, ax = plt.subplots(figsize=(5.2, 2.8))
    _show(ax, torch.cat([img_a, img_b], dim=-1), title)
    for l, ((xa, ya), (xb, yb)) in enumerate(zip(pts_a.tolist(), pts_b.tolist())):
        ax.plot([xa, xb + w], [ya, yb], color=PAIR_COLORS[l % len(PAIR_COLORS)], linewidth=1.2)
        ax.scatter([xa, xb + w], [ya, yb], s=10, color=PAIR_COLORS[l % len(PAIR_COLORS)])
    fig.tight_layout()
    return fig


def save_figure(fig: Figure, path: str | Path, dpi: int = 130) -> Path:
    """Write ``fig`` as PNG atomically and close it."""
    try:
        return atomic_write(Path(path), lambda f: fig.savefig(f, format="png", dpi=dpi))
    finally:
        plt.close(fig)
