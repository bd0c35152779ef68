"""Loaders for real data on disk: the CUB-200-2011 folder layout and a plain image folder.

Nothing is downloaded: point them at a folder you have. Malformed files raise
`InputError` naming the file and line.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import torch
from PIL import Image

from ..errors import InputError

__all__ = ["CUB200", "ImageFolder", "default_transform", "open_rgb", "IMAGE_EXTENSIONS"]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


def default_transform(size: int = 224, resize: int = 256) -> Callable[[Image.Image], torch.Tensor]:
    """Resize ``resize`` + CenterCrop ``size`` + to float `[3, size, size]` in [0, 1] (the papers' preprocessing,
    without normalisation: add ImageNet normalisation for torchvision models, see `xcorr_core.models.imagenet_normalize`)."""
    from torchvision import transforms as T

    return T.Compose([T.Resize(resize), T.CenterCrop(size), T.ToTensor()])


def _rows(path: Path, ncols: int, cast: tuple[Callable[[str], Any], ...]) -> list[tuple[Any, ...]]:
    if not path.is_file():
        raise InputError(f"missing file {path}")
    out = []
    for ln, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split(maxsplit=ncols - 1) if cast[-1] is str else line.split()
        if len(parts) < ncols:
            raise InputError(f"{path}:{ln}: expected {ncols} columns, got {len(parts)}: {line!r}")
        try:
            out.append(tuple(c(p) for c, p in zip(cast, parts[:ncols])))
        except ValueError as exc:
            raise InputError(f"{path}:{ln}: {exc}: {line!r}") from exc
    return out


def open_rgb(path: str | Path) -> Image.Image:
    """Open an image file as RGB; `InputError` naming the file if it cannot be read."""
    try:
        with Image.open(path) as im:
            if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):  # 16-bit (or 32-bit) grey: scale, do not clip to white
                import numpy as np

                arr = np.asarray(im, dtype=np.float64)
                top = 65535.0 if im.mode.startswith("I;16") or arr.max() > 255 else 255.0
                if im.mode == "I" and arr.max() > 65535:
                    top = float(arr.max())
                return Image.fromarray(np.clip(arr / top * 255 + 0.5, 0, 255).astype(np.uint8), "L").convert("RGB")
            return im.convert("RGB")
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read image {path}: {exc}") from exc


class CUB200(torch.utils.data.Dataset):
    """CUB-200-2011 from its folder layout (``images.txt``, ``image_class_labels.txt``,
    ``train_test_split.txt``, ``bounding_boxes.txt``, ``classes.txt``, ``parts/parts.txt``,
    ``parts/part_locs.txt``, ``attributes/image_attribute_labels.txt``).

    Items are ``(transform(image), label)`` with 0-based labels.

    Attributes:
        keypoints: `[N, P, 3]` (x, y, visible) in original image pixels (P = 15 in CUB).
        boxes: `[N, 4]` (x0, y0, x1, y1) in original pixels.
        attributes: `[N, A]` binary part attributes (A = 312), or None when the file is absent.
        paths: image paths.
        labels: long `[N]`, 0-based.
        class_names: from ``classes.txt``.
        part_names: from ``parts/parts.txt``.
    """

    def __init__(self, root: str | Path, split: Literal["train", "test", "all"] = "train",
                 transform: Callable[[Image.Image], Any] | None = None) -> None:
        root = Path(root)
        if not root.is_dir():
            raise InputError(f"CUB root {root} is not a folder")
        if split not in ("train", "test", "all"):
            raise InputError(f"split must be 'train', 'test' or 'all', got {split!r}")
        images = dict(_rows(root / "images.txt", 2, (int, str)))
        labels = dict(_rows(root / "image_class_labels.txt", 2, (int, int)))
        is_train = dict(_rows(root / "train_test_split.txt", 2, (int, int)))
        boxes = {r[0]: r[1:] for r in _rows(root / "bounding_boxes.txt", 5, (int, float, float, float, float))}
        self.class_names = [n for _, n in sorted(_rows(root / "classes.txt", 2, (int, str)))]
        ids = sorted(i for i in images if split == "all" or (is_train.get(i) == 1) == (split == "train"))
        for name, table in (("image_class_labels.txt", labels), ("train_test_split.txt", is_train), ("bounding_boxes.txt", boxes)):
            missing = [i for i in ids if i not in table]
            if missing:
                raise InputError(f"{root / name} has no row for image id {missing[0]}")
        self.root, self.transform, self.ids = root, transform or default_transform(), ids
        self.paths = [root / "images" / images[i] for i in ids]
        self.labels = torch.tensor([labels[i] - 1 for i in ids], dtype=torch.int64)
        if ids and int(self.labels.min()) < 0:
            raise InputError("class ids in image_class_labels.txt must start at 1")
        self.boxes = torch.tensor([[x, y, x + w, y + h] for x, y, w, h in (boxes[i] for i in ids)], dtype=torch.float32).reshape(-1, 4)
        pos = {i: k for k, i in enumerate(ids)}
        parts_file = root / "parts" / "parts.txt"
        self.part_names = [n for _, n in sorted(_rows(parts_file, 2, (int, str)))] if parts_file.is_file() else []
        self.keypoints = torch.zeros(len(ids), len(self.part_names), 3)
        locs = root / "parts" / "part_locs.txt"
        if locs.is_file():
            for img, part, x, y, vis in _rows(locs, 5, (int, int, float, float, lambda s: int(float(s)))):
                if img in pos:
                    if not 1 <= part <= len(self.part_names):
                        raise InputError(f"{locs}: part id {part} not in parts.txt")
                    self.keypoints[pos[img], part - 1] = torch.tensor([x, y, float(vis)])
        attr_file = root / "attributes" / "image_attribute_labels.txt"
        self.attributes: torch.Tensor | None = None
        if attr_file.is_file():
            rows = _rows(attr_file, 3, (int, int, int))
            n_attr = max(r[1] for r in rows) if rows else 0
            self.attributes = torch.zeros(len(ids), n_attr, dtype=torch.int64)
            for img, a, present in rows:
                if img in pos:
                    self.attributes[pos[img], a - 1] = present

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> tuple[Any, int]:
        return self.transform(open_rgb(self.paths[i])), int(self.labels[i])


class ImageFolder(torch.utils.data.Dataset):
    """``root/<class>/<image>`` folders; classes sorted by name, labels 0-based.

    Items are ``(transform(image), label)``; ``paths``, ``labels`` and ``class_names`` are attributes.
    """

    def __init__(self, root: str | Path, transform: Callable[[Image.Image], Any] | None = None) -> None:
        root = Path(root)
        if not root.is_dir():
            raise InputError(f"image folder {root} is not a folder")
        self.class_names = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
        if not self.class_names:
            raise InputError(f"{root} has no class sub-folders (expected root/<class>/<image>)")
        paths, labels = [], []
        for c, name in enumerate(self.class_names):
            files = sorted(p for p in (root / name).rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
            paths += files
            labels += [c] * len(files)
        if not paths:
            raise InputError(f"{root} holds no images with extensions {', '.join(IMAGE_EXTENSIONS)}")
        self.root, self.paths, self.transform = root, paths, transform or default_transform()
        self.labels = torch.tensor(labels, dtype=torch.int64)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[Any, int]:
        return self.transform(open_rgb(self.paths[i])), int(self.labels[i])
