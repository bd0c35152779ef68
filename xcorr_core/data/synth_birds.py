"""SynthBirds: a procedurally generated fine-grained "bird" data set with parts.

24 classes in 4 genera; the species of a genus differ from the genus in one or
two parts (beak, crown, crest, wing pattern or colour, tail, belly colour).
Each image has a random pose (rotation, scale, flip, position), background and
sometimes an occluding branch, and carries its part keypoints with visibility,
the bird's box and per-part attribute labels. Two out-of-distribution variants
reuse the same poses: ``sticker`` (a patterned patch pasted on the image, an
analogue of Adversarial Patch) and ``style`` (an unseen cartoon rendering with
outlines on an unseen background, an analogue of ImageNet-R).

Everything is generated from a seed: image ``i`` of a split depends only on
``(seed, split, i)``, so data sets of different sizes share their first images.
"""
from __future__ import annotations

import json
import math
from functools import lru_cache
from typing import Literal

import torch
from pydantic import BaseModel
from tqdm.auto import tqdm

from ..errors import InputError
from . import _draw as D
from ._base import UInt8ImageDataset
from .cache import cached

__all__ = ["SynthBirds", "BirdAnnotation", "PART_NAMES", "ATTRIBUTES", "CLASS_ATTRIBUTES", "CLASS_NAMES"]

Split = Literal["train", "test"]
Variant = Literal["clean", "sticker", "style"]

PART_NAMES: tuple[str, ...] = ("beak", "crown", "eye", "throat", "breast", "belly", "back", "wing", "tail", "leg")

#: attribute -> (part it belongs to, value names)
ATTRIBUTES: dict[str, tuple[str, tuple[str, ...]]] = {
    "beak_shape": ("beak", ("short", "long", "hooked")),
    "beak_color": ("beak", ("yellow", "black", "orange")),
    "crown_color": ("crown", ("red", "blue", "black", "grey")),
    "crest": ("crown", ("none", "crested")),
    "wing_pattern": ("wing", ("plain", "striped", "spotted", "barred")),
    "wing_color": ("wing", ("brown", "green", "blue", "grey")),
    "tail_shape": ("tail", ("pointed", "fan", "forked")),
    "belly_color": ("belly", ("white", "yellow", "red", "buff")),
}
ATTRIBUTE_NAMES: tuple[str, ...] = tuple(ATTRIBUTES)

_COLORS: dict[str, tuple[float, float, float]] = {
    "yellow": (0.95, 0.82, 0.15), "black": (0.08, 0.08, 0.08), "orange": (0.95, 0.5, 0.1),
    "red": (0.85, 0.12, 0.12), "blue": (0.15, 0.3, 0.85), "grey": (0.55, 0.55, 0.58),
    "brown": (0.45, 0.28, 0.12), "green": (0.2, 0.6, 0.2), "white": (0.96, 0.96, 0.94),
    "buff": (0.86, 0.74, 0.55),
}
_GENUS_BODY = [(0.55, 0.42, 0.3), (0.35, 0.38, 0.42), (0.62, 0.6, 0.45), (0.3, 0.3, 0.22)]
_GENUS_NAMES = ["Sparrow", "Warbler", "Finch", "Shrike"]
_SPECIES_WORDS = ["Common", "Northern", "Southern", "Lesser", "Greater", "Island"]


def _make_classes(n_genera: int = 4, per_genus: int = 6, seed: int = 7) -> list[dict[str, int]]:
    """Class attribute vectors: species 0 of a genus is the genus; the others change 1-2 attributes."""
    g = torch.Generator().manual_seed(seed)
    classes: list[dict[str, int]] = []
    seen: set[tuple[int, ...]] = set()
    for _ in range(n_genera):
        while True:
            base = {a: int(torch.randint(len(v[1]), (1,), generator=g)) for a, v in ATTRIBUTES.items()}
            if tuple(base.values()) not in seen:
                break
        genus = [base]
        seen.add(tuple(base.values()))
        while len(genus) < per_genus:
            n_change = 1 + int(torch.randint(2, (1,), generator=g))
            attrs = torch.randperm(len(ATTRIBUTE_NAMES), generator=g)[:n_change].tolist()
            sp = dict(base)
            for ai in attrs:
                name = ATTRIBUTE_NAMES[ai]
                k = len(ATTRIBUTES[name][1])
                sp[name] = (base[name] + 1 + int(torch.randint(k - 1, (1,), generator=g))) % k
            key = tuple(sp.values())
            if key not in seen:
                seen.add(key)
                genus.append(sp)
        classes.extend(genus)
    return classes


CLASS_ATTRIBUTES: list[dict[str, int]] = _make_classes()
CLASS_NAMES: list[str] = [f"{_SPECIES_WORDS[i % 6]} {_GENUS_NAMES[i // 6]}" for i in range(len(CLASS_ATTRIBUTES))]
CLASS_GENUS: list[int] = [i // 6 for i in range(len(CLASS_ATTRIBUTES))]


class BirdAnnotation(BaseModel):
    """Ground truth of one SynthBirds image (pixel coordinates, x right, y down)."""

    label: int
    class_name: str
    keypoints: list[tuple[float, float, bool]]  # per part in PART_NAMES: (x, y, visible)
    box: tuple[float, float, float, float]  # x0, y0, x1, y1
    attributes: dict[str, str]  # attribute -> value name
    flipped: bool
    angle: float
    scale: float


# canonical keypoints (bird faces +x; y down), each inside the part it names
_KP_CANON = {
    "crown": (23.0, -20.0), "eye": (28.0, -16.0), "throat": (29.0, -7.0), "breast": (18.0, 5.0),
    "belly": (2.0, 12.0), "back": (-4.0, -13.0), "wing": (-6.0, -1.0), "leg": (-2.3, 24.0),
}
_BEAK_LEN = {"short": 8.0, "long": 16.0, "hooked": 11.0}
_TAIL_KP = {"pointed": (-34.0, 3.0), "fan": (-36.0, 2.0), "forked": (-30.0, 1.0)}


def _canon_keypoints(attrs: dict[str, str]) -> torch.Tensor:
    beak = (32.0 + 0.45 * _BEAK_LEN[attrs["beak_shape"]], -13.0)
    pts = {**_KP_CANON, "beak": beak, "tail": _TAIL_KP[attrs["tail_shape"]]}
    return torch.tensor([pts[p] for p in PART_NAMES])


def _draw_bird(img: torch.Tensor, x: torch.Tensor, y: torch.Tensor, attrs: dict[str, str], body: tuple[float, float, float],
               cartoon: bool) -> torch.Tensor:
    """Paint the bird in canonical coordinates (x, y) onto img; return the bird mask."""
    col = {k: torch.tensor(v) for k, v in _COLORS.items()}
    bodyc = torch.tensor(body)
    layers: list[torch.Tensor] = []

    def put(mask: torch.Tensor, color: torch.Tensor) -> None:
        D.paint(img, mask, color)
        layers.append(mask)

    # tail
    ts = attrs["tail_shape"]
    if ts == "pointed":
        tail = D.polygon(x, y, [(-20, -6), (-20, 6), (-50, 6)])
    elif ts == "fan":
        tail = D.polygon(x, y, [(-20, -3), (-20, 5), (-46, 16), (-46, -12)])
    else:
        tail = D.polygon(x, y, [(-20, -5), (-20, 5), (-48, 12), (-36, 2)]) | D.polygon(x, y, [(-20, -5), (-20, 5), (-36, 2), (-48, -8)])
    put(tail, bodyc * 0.8)
    # legs
    legs = D.segment(x, y, (-3, 14), (-2, 28), 2.5) | D.segment(x, y, (5, 14), (4, 28), 2.5)
    put(legs, torch.tensor((0.35, 0.25, 0.15)))
    # body and belly
    bodym = D.ellipse(x, y, 0, 0, 27, 16)
    put(bodym, bodyc)
    belly = D.ellipse(x, y, 4, 8, 20, 8) & bodym
    put(belly, col[attrs["belly_color"]])
    # wing with its pattern (in wing-local coordinates)
    ang = -0.18
    wing = D.ellipse(x, y, -6, -2, 19, 9, ang)
    c, s = math.cos(ang), math.sin(ang)
    u = (x + 6) * c + (y + 2) * s
    v = -(x + 6) * s + (y + 2) * c
    wcol = col[attrs["wing_color"]]
    put(wing, wcol)
    pat = attrs["wing_pattern"]
    dark = (wcol * 0.35 + 0.05)
    if pat == "striped":
        D.paint(img, wing & (torch.sin(v * 1.3) > 0.35), dark)
    elif pat == "spotted":
        D.paint(img, wing & ((torch.remainder(u, 7) - 3.5) ** 2 + (torch.remainder(v, 6) - 3) ** 2 < 4.0), torch.tensor((0.97, 0.97, 0.95)))
    elif pat == "barred":
        D.paint(img, wing & (torch.sin(u * 0.9) > 0.45), dark)
    # head, crest, beak, eye
    head = D.ellipse(x, y, 24, -14, 11, 10)
    put(head, bodyc)
    crown = head & (y < -16)
    D.paint(img, crown, col[attrs["crown_color"]])
    if attrs["crest"] == "crested":
        put(D.polygon(x, y, [(17, -20), (27, -22), (15, -33)]), col[attrs["crown_color"]])
    bl = _BEAK_LEN[attrs["beak_shape"]]
    if attrs["beak_shape"] == "hooked":
        beak = D.polygon(x, y, [(32, -18), (32, -10), (33 + bl, -10), (33 + bl * 0.7, -18)]) & ~D.ellipse(x, y, 33 + bl, -20, bl * 0.45, 6)
    else:
        beak = D.polygon(x, y, [(32, -17), (32, -9), (33 + bl, -13)])
    put(beak, col[attrs["beak_color"]])
    D.paint(img, D.ellipse(x, y, 28, -16, 2.3, 2.3), torch.tensor((0.02, 0.02, 0.02)))
    mask = torch.stack(layers).any(0)
    if cartoon:  # the unseen rendering style: colours washed towards grey, a heavy ink outline outside the silhouette
        grey = img[:, mask].mean(0, keepdim=True)
        img[:, mask] = 0.9 * img[:, mask] + 0.1 * grey + 0.03
        D.paint(img, D.outline(mask, 2) & ~mask, torch.tensor((0.08, 0.08, 0.1)))
    return mask


def _background(gen: torch.Generator, size: int, style: bool) -> torch.Tensor:
    if style:  # unseen: flat pastel stripes / checkers (training never shows hard geometric backgrounds)
        yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
        period = 8 + int(torch.randint(8, (1,), generator=gen))
        a = torch.rand(3, generator=gen) * 0.3 + 0.6
        b = a * (0.75 + 0.1 * torch.rand(1, generator=gen))
        if bool(torch.rand(1, generator=gen) < 0.5):
            m = ((xx + yy) // period) % 2 == 0
        else:
            m = ((xx // period + yy // period) % 2) == 0
        return torch.where(m[None], a[:, None, None], b[:, None, None])
    kind = int(torch.randint(3, (1,), generator=gen))
    base = torch.rand(3, generator=gen) * 0.5 + 0.3
    noise = D.smooth_noise(gen, 3, size, 4 + 2 * kind)
    img = base[:, None, None] * 0.6 + noise * 0.4
    if kind == 0:  # sky gradient
        ramp = torch.linspace(0.2, -0.1, size)[None, :, None]
        img = img + ramp * torch.tensor([0.1, 0.2, 0.5])[:, None, None]
    elif kind == 1:  # foliage tint
        img = img * torch.tensor([0.7, 1.0, 0.6])[:, None, None]
    return img.clamp(0, 1)


def _sticker(gen: torch.Generator, size: int) -> tuple[torch.Tensor, int]:
    side = int(size * (0.28 + 0.08 * float(torch.rand(1, generator=gen))))
    yy, xx = torch.meshgrid(torch.arange(side), torch.arange(side), indexing="ij")
    r = ((xx - side / 2) ** 2 + (yy - side / 2) ** 2).sqrt()
    c1, c2 = torch.rand(3, generator=gen), torch.rand(3, generator=gen)
    ring = torch.sin(r * (0.8 + float(torch.rand(1, generator=gen)))) > 0
    return torch.where(ring[None], c1[:, None, None], c2[:, None, None]), side


def render_bird(label: int, gen: torch.Generator, size: int, variant: Variant, supersample: int = 2) -> tuple[torch.Tensor, BirdAnnotation]:
    """Render one image `[3, size, size]` (uint8) of class ``label`` with its annotation."""
    attrs = {a: ATTRIBUTES[a][1][v] for a, v in CLASS_ATTRIBUTES[label].items()}
    body = _GENUS_BODY[CLASS_GENUS[label]]
    # pose: bird length ~ 85 canonical units -> 50-85 % of the image
    scale = size / 112 * (0.72 + 0.3 * float(torch.rand(1, generator=gen)))
    angle = (float(torch.rand(1, generator=gen)) - 0.5) * math.radians(50)
    flip = bool(torch.rand(1, generator=gen) < 0.5)
    margin = 32 * scale
    tx = margin + float(torch.rand(1, generator=gen)) * max(size - 2 * margin, 1)
    ty = margin + float(torch.rand(1, generator=gen)) * max(size - 2 * margin, 1)
    ca, sa = math.cos(angle), math.sin(angle)
    fx = -1.0 if flip else 1.0
    A = torch.tensor([[scale * ca * fx, -scale * sa], [scale * sa * fx, scale * ca]])
    t = torch.tensor([tx, ty])
    # background and occluder streams are drawn after the pose so variants keep the pose
    bg_gen = torch.Generator().manual_seed(int(torch.randint(2**62, (1,), generator=gen)))
    extra_gen = torch.Generator().manual_seed(int(torch.randint(2**62, (1,), generator=gen)))
    S = size * supersample
    coords = (torch.arange(S, dtype=torch.float32) + 0.5) / supersample
    py, px = torch.meshgrid(coords, coords, indexing="ij")
    Ainv = torch.linalg.inv(A)
    cx = Ainv[0, 0] * (px - t[0]) + Ainv[0, 1] * (py - t[1])
    cy = Ainv[1, 0] * (px - t[0]) + Ainv[1, 1] * (py - t[1])
    style = variant == "style"
    bg = _background(bg_gen, size, style)
    img = torch.nn.functional.interpolate(bg[None], size=(S, S), mode="nearest")[0].clone()
    mask = _draw_bird(img, cx, cy, attrs, body, cartoon=style)
    # occluding branch on some images (all variants, same geometry)
    occl = torch.zeros(S, S, dtype=torch.bool)
    if bool(torch.rand(1, generator=extra_gen) < 0.25):
        p0 = (float(torch.rand(1, generator=extra_gen)) * size, 0.0)
        p1 = (float(torch.rand(1, generator=extra_gen)) * size, float(size))
        occl = D.segment(px, py, p0, p1, 5.0 * size / 112)
        D.paint(img, occl, torch.tensor((0.3, 0.2, 0.1)))
    img = D.downsample(img, supersample)
    # sticker: pasted after rendering (so it hides what is under it)
    sticker_box = None
    if variant == "sticker":
        patch, side = _sticker(extra_gen, size)
        x0 = int(torch.randint(size - side + 1, (1,), generator=extra_gen))
        y0 = int(torch.randint(size - side + 1, (1,), generator=extra_gen))
        img[:, y0:y0 + side, x0:x0 + side] = patch
        sticker_box = (x0, y0, x0 + side, y0 + side)
    img = (img.clamp(0, 1) * 255).round().to(torch.uint8)
    # annotations
    kp = _canon_keypoints(attrs) @ A.T + t
    occl_px = D.downsample(occl[None].float(), supersample)[0] > 0.5
    vis = []
    for x, y in kp.tolist():
        inside = 0 <= x < size and 0 <= y < size
        hidden = inside and bool(occl_px[int(y), int(x)])
        if sticker_box is not None and inside:
            hidden |= sticker_box[0] <= x < sticker_box[2] and sticker_box[1] <= y < sticker_box[3]
        vis.append(inside and not hidden)
    m_px = D.downsample(mask[None].float(), supersample)[0] > 0.25
    ys, xs = torch.nonzero(m_px, as_tuple=True)
    box = (float(xs.min()), float(ys.min()), float(xs.max()) + 1, float(ys.max()) + 1) if xs.numel() else (0.0, 0.0, 0.0, 0.0)
    ann = BirdAnnotation(
        label=label, class_name=CLASS_NAMES[label], keypoints=[(x, y, v) for (x, y), v in zip(kp.tolist(), vis)],
        box=box, attributes=attrs, flipped=flip, angle=angle, scale=scale,
    )
    return img, ann


def _image_seed(seed: int, split: str, index: int) -> int:
    return (seed * 1_000_003 + {"train": 0, "test": 1}[split] * 7_919_111 + index * 104_729) % (2**62)


@lru_cache(maxsize=16)
def _generate(split: str, variant: str, seed: int, per_class: int, size: int, num_classes: int, progress: bool | None):
    """Images and annotations, from the on-disk cache when a valid copy is there (see `cache`)."""
    params = {"split": split, "variant": variant, "seed": seed, "per_class": per_class, "size": size, "num_classes": num_classes}

    def make() -> dict[str, torch.Tensor | str]:
        images, anns = _render_all(split, variant, seed, per_class, size, num_classes, progress)
        return {"images": images, "annotations": json.dumps([a.model_dump(mode="json") for a in anns])}

    payload = cached("synthbirds", params, make)
    anns = tuple(BirdAnnotation.model_validate(a) for a in json.loads(str(payload["annotations"])))
    return payload["images"], anns


def _render_all(split: str, variant: str, seed: int, per_class: int, size: int, num_classes: int, progress: bool | None):
    n = per_class * num_classes
    images = torch.empty(n, 3, size, size, dtype=torch.uint8)
    anns: list[BirdAnnotation] = []
    for i in tqdm(range(n), desc=f"SynthBirds {split}/{variant}", disable=(None if progress is None else not progress), leave=False):
        g = torch.Generator().manual_seed(_image_seed(seed, split, i))
        images[i], ann = render_bird(i % num_classes, g, size, variant)  # type: ignore[arg-type]
        anns.append(ann)
    return images, tuple(anns)


class SynthBirds(UInt8ImageDataset):
    """Fine-grained synthetic birds with parts, as a torch Dataset.

    Items are ``(image, label)``: image float `[3, size, size]` in [0, 1], label long.

    Args:
        split: ``"train"`` or ``"test"`` (different poses and backgrounds).
        variant: ``"clean"``, ``"sticker"`` (adversarial-patch analogue) or
            ``"style"`` (unseen rendering, ImageNet-R analogue).
        seed: the data set seed.
        per_class: images per class.
        size: image side in pixels.
        num_classes: number of classes used (the first ones, at most 24).
        progress: show a progress bar while generating (None: when on a terminal).

    Attributes:
        images: uint8 `[N, 3, size, size]`.
        labels: long `[N]`.
        keypoints: `[N, P, 3]` (x, y, visible) per part in `PART_NAMES`.
        boxes: `[N, 4]` (x0, y0, x1, y1).
        attributes: long `[N, A]` value index per attribute in `ATTRIBUTE_NAMES`.
    """

    part_names = PART_NAMES
    attribute_names = ATTRIBUTE_NAMES

    def __init__(self, split: Split = "train", variant: Variant = "clean", *, seed: int = 0, per_class: int | None = None,
                 size: int = 112, num_classes: int = 24, progress: bool | None = None) -> None:
        if split not in ("train", "test"):
            raise InputError(f"split must be 'train' or 'test', got {split!r}")
        if variant not in ("clean", "sticker", "style"):
            raise InputError(f"variant must be 'clean', 'sticker' or 'style', got {variant!r}")
        if not 2 <= num_classes <= len(CLASS_ATTRIBUTES):
            raise InputError(f"num_classes must be in [2, {len(CLASS_ATTRIBUTES)}], got {num_classes}")
        if size < 32:
            raise InputError(f"size must be >= 32, got {size}")
        per_class = per_class if per_class is not None else (30 if split == "train" else 10)
        if per_class < 1:
            raise InputError(f"per_class must be >= 1, got {per_class}")
        self.split, self.variant, self.seed, self.size, self.num_classes = split, variant, seed, size, num_classes
        self.images, self.annotations = _generate(split, variant, seed, per_class, size, num_classes, progress)
        self.labels = torch.tensor([a.label for a in self.annotations], dtype=torch.int64)
        self.keypoints = torch.tensor([a.keypoints for a in self.annotations], dtype=torch.float32)
        self.boxes = torch.tensor([a.box for a in self.annotations], dtype=torch.float32)
        self.attributes = torch.tensor(
            [[ATTRIBUTES[n][1].index(a.attributes[n]) for n in ATTRIBUTE_NAMES] for a in self.annotations], dtype=torch.int64
        )
        self.class_names = CLASS_NAMES[:num_classes]

