"""Images of a browser site: the queries' and the shown neighbours' pictures as small JPEG files,
and the explanation figures of a job's explanation files as PNG. Depends on Pillow, matplotlib
(figures only) and the core's jobs.table (explanation files) and viz modules.
"""
from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

__all__ = ["image_getter", "save_picture", "render_figures"]

#: longest side of a saved picture, in pixels (the detail view shows them at up to this size)
PICTURE_SIDE = 160


def image_getter(dataset: Any) -> Callable[[int], Any]:
    """A function ``i -> picture`` for a data set: the original file when the set has ``paths``
    (image folders, CUB), else its ``image(i)`` or item ``[0]``, a float `[3, H, W]` in [0, 1]."""
    paths = getattr(dataset, "paths", None)
    if paths is not None:
        from PIL import Image

        return lambda i: Image.open(paths[i]).convert("RGB")
    if hasattr(dataset, "image"):
        return dataset.image
    return lambda i: dataset[i][0]


def _to_pil(picture: Any) -> Any:
    from PIL import Image

    if isinstance(picture, Image.Image):
        return picture
    t = torch.as_tensor(picture).detach().float().cpu()
    if t.ndim == 2:
        t = t[None].expand(3, -1, -1)
    arr = (t.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).contiguous().numpy()
    return Image.fromarray(arr)


def save_picture(picture: Any, path: Path, side: int = PICTURE_SIDE) -> tuple[int, int]:
    """Write ``picture`` (a PIL image or a `[3, H, W]` tensor in [0, 1]) as a JPEG whose longest side
    is at most ``side``; returns its (width, height)."""
    img = _to_pil(picture)
    img.thumbnail((side, side))
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, "JPEG", quality=88)
    return img.size


#: what a figure renderer may pass to ``Explanation.plot`` (each only when the method takes it)
PLOT_ARGUMENTS = ("images", "query", "query_image", "class_names", "target")


def render_figures(expl_path: Path, site: Path, stem: str, *, query: Any, gallery: Callable[[int], Any] | None,
                   class_names: list[str] | None, target: int) -> tuple[list[str], list[str]]:
    """Draw each explanation of one explanation file that has a figure of its own and save it as
    ``site/fig/<stem>-<j>.png``. Neighbour explanations are skipped: the detail view draws the
    neighbours and correspondences itself. ``plot`` receives those of `PLOT_ARGUMENTS` it declares.
    Returns (figure paths relative to the site, problems as text)."""
    from ..fileio import make_dir
    from ..jobs.table import load_explanations
    from ..viz import save_figure

    available = {"images": gallery, "query": query, "query_image": query, "class_names": class_names, "target": target}
    paths: list[str] = []
    problems: list[str] = []
    try:
        explanations = load_explanations(expl_path)
    except Exception as exc:  # noqa: BLE001 - a missing or unreadable file costs its figures, not the site
        return paths, [f"could not read {expl_path.name} ({type(exc).__name__}: {exc})"]
    for j, exp in enumerate(explanations):
        if hasattr(exp, "support_ids"):
            continue
        params = inspect.signature(exp.plot).parameters
        kwargs = {k: available[k] for k in PLOT_ARGUMENTS if k in params and available[k] is not None}
        try:
            fig = exp.plot(**kwargs)
        except Exception as exc:  # noqa: BLE001 - one figure that cannot be drawn is reported on the page
            problems.append(f"{type(exp).__name__}: {type(exc).__name__}: {exc}")
            continue
        rel = f"fig/{stem}-{j}.png"
        make_dir(site / "fig")
        save_figure(fig, site / rel)
        paths.append(rel)
    return paths, problems
