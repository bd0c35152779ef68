"""The PAIR-X figure: top row, both images blended with their layer-relevance heatmaps and the
matches drawn as lines coloured by rank; bottom row, the per-match pixel maps, each match in
its colour, composited on white."""
from __future__ import annotations

from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

__all__ = ["plot_pairx", "composite_maps"]


def _rgb(img: torch.Tensor | None, size: tuple[int, int]) -> torch.Tensor:
    if img is None:
        return torch.full((*size, 3), 0.85)
    return img.detach().float().cpu().clamp(0, 1).permute(1, 2, 0)


def composite_maps(maps: torch.Tensor, colors: torch.Tensor) -> torch.Tensor:
    """Per-match maps `[n, H, W]` -> RGB `[H, W, 3]` on white: each pixel takes the colour of its
    strongest match, with opacity given by that match's normalised relevance."""
    if maps.shape[0] == 0:
        return torch.ones(*maps.shape[1:], 3)
    norm = maps / maps.flatten(1).amax(1).clamp_min(1e-12)[:, None, None]
    strength, who = norm.max(0)
    alpha = strength.clamp(0, 1).sqrt()[..., None]  # sqrt: faint support stays visible
    return (1 - alpha) * torch.ones(3) + alpha * colors[who]


def plot_pairx(exp: Any, image_a: torch.Tensor | None = None, image_b: torch.Tensor | None = None) -> Any:
    n = int(exp.matches.shape[0])
    cmap = plt.get_cmap("viridis")
    colors = torch.tensor([cmap(1 - k / max(1, n - 1))[:3] for k in range(n)]) if n else torch.zeros(0, 3)
    H, W = exp.image_size
    fig, axes = plt.subplots(2, 1, figsize=(7.2, 7.2), layout="constrained")
    rows = []
    for rel, img in ((exp.relevance_a, image_a), (exp.relevance_b, image_b)):
        heat = F.interpolate(rel[None, None].float(), size=(H, W), mode="bilinear", align_corners=False)[0, 0]
        heat = (heat / heat.max().clamp_min(1e-12)).clamp(0, 1)
        hm = torch.tensor(plt.get_cmap("inferno")(heat.numpy())[..., :3], dtype=torch.float32)
        rows.append(0.55 * _rgb(img, (H, W)) + 0.45 * hm)
    gap = torch.ones(H, max(4, W // 16), 3)
    axes[0].imshow(torch.cat([rows[0], gap, rows[1]], dim=1).numpy())
    off = W + gap.shape[1]
    for k in range(n - 1, -1, -1):  # best match drawn last (on top)
        (xa, ya), (xb, yb) = exp.keypoints_a[k].tolist(), exp.keypoints_b[k].tolist()
        axes[0].plot([xa, xb + off], [ya, yb], color=colors[k].tolist(), linewidth=1.4)
        axes[0].scatter([xa, xb + off], [ya, yb], color=[colors[k].tolist()], s=10)
    axes[0].set_title(f"PAIR-X at {exp.layer}: cosine {exp.similarity:.3f}, top {n} of {exp.all_matches.shape[0]} matches "
                      "(colour = rank, yellow best); heatmap = layer relevance", fontsize=8)
    comp = torch.cat([composite_maps(exp.pixel_maps_a, colors), torch.ones_like(gap), composite_maps(exp.pixel_maps_b, colors)], dim=1)
    axes[1].imshow(comp.clamp(0, 1).numpy())
    axes[1].set_title("per-match pixel relevance (each match in its colour)", fontsize=8)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    if exp.meta.get("title"):
        fig.suptitle(exp.meta["title"], fontsize=10)
    return fig
