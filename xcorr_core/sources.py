"""Data sources by name: what a job spec or ``xcorr run --data`` names, loaded the same way in the
driver and in every worker.

A source is a small pydantic model (``{kind: synthbirds, split: test}``) or its short string form
(``synthbirds:test``, ``synthbirds:test:sticker``, ``synthherd:train``, ``imagefolder:/data/imgs``,
``cub:/data/CUB_200_2011:test``). `load_source` turns it into a Dataset of ``(image, label)``;
`item_path` names each item for the results table. Depends on the core's data and errors modules.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, StrictInt

from .components import StrictConfig
from .errors import ConfigError

__all__ = ["DataSource", "load_source", "source_size", "item_path"]

Kind = Literal["synthbirds", "synthherd", "imagefolder", "cub"]


class DataSource(StrictConfig):
    """A data set the core can load.

    Attributes:
        kind: ``synthbirds`` / ``synthherd`` (embedded, generated from ``seed``), ``imagefolder``
            (``root/<class>/<image>``) or ``cub`` (the CUB-200-2011 folder layout).
        split: ``train`` / ``test`` (``all`` for CUB); ignored for an image folder.
        root: folder of an image folder or of CUB.
        variant: SynthBirds test variant (``clean``, ``sticker``, ``style``).
        per_class: SynthBirds images per class (default 30 train / 10 test); SynthHerd photos per individual.
        seed: generation seed of the synthetic sets.
        size: image side in pixels (synthetic: generated size; real: the centre crop).
    """

    kind: Kind
    split: Literal["train", "test", "all"] = "test"
    root: str | None = None
    variant: Literal["clean", "sticker", "style"] = "clean"
    per_class: StrictInt | None = Field(None, ge=1)
    seed: StrictInt = 0
    size: StrictInt | None = Field(None, ge=32)

    @classmethod
    def parse(cls, value: "DataSource | str | dict[str, Any]", where: str = "data") -> "DataSource":
        """A `DataSource` from itself, a dict, or the short string form; `ConfigError` naming ``where``."""
        if isinstance(value, DataSource):
            return value
        if isinstance(value, dict):
            try:
                return cls.model_validate(value)
            except Exception as exc:  # pydantic's ValidationError
                raise ConfigError(f"{where}: {exc}", field=where) from exc
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{where}: expected a data source like 'synthbirds:test', got {value!r}", field=where)
        kind, _, rest = value.partition(":")
        kind = kind.strip().lower()
        if kind in ("synthbirds", "synthherd"):
            parts = [p for p in rest.split(":") if p] if rest else []
            fields: dict[str, Any] = {"kind": kind}
            if parts:
                fields["split"] = parts[0]
            if len(parts) > 1:
                fields["variant"] = parts[1]
            if len(parts) > 2:
                raise ConfigError(f"{where}: {value!r} has too many ':' parts (kind:split[:variant])", field=where)
        elif kind in ("imagefolder", "cub"):
            root, split = rest, "test"
            if kind == "cub" and rest.rsplit(":", 1)[-1] in ("train", "test", "all") and ":" in rest:
                root, split = rest.rsplit(":", 1)
            if not root:
                raise ConfigError(f"{where}: {kind} needs a folder: '{kind}:/path/to/folder'", field=where)
            fields = {"kind": kind, "root": root, "split": split}
        else:
            raise ConfigError(f"{where}: unknown data source kind {kind!r} in {value!r}; use synthbirds, synthherd, imagefolder "
                              "or cub", field=where)
        return cls.parse(fields, where)

    def label(self) -> str:
        """Short human-readable name, e.g. ``synthbirds:test``."""
        if self.kind in ("synthbirds", "synthherd"):
            return f"{self.kind}:{self.split}" + (f":{self.variant}" if self.variant != "clean" else "")
        return f"{self.kind}:{self.root}" + (f":{self.split}" if self.kind == "cub" else "")


def load_source(source: DataSource | str | dict[str, Any], *, progress: bool | None = False) -> Any:
    """The Dataset of ``(image, label)`` a source names (generated or read from disk)."""
    src = DataSource.parse(source)
    if src.kind == "synthbirds":
        from .data import SynthBirds

        if src.split == "all":
            raise ConfigError("data: SynthBirds has splits 'train' and 'test' only", field="data.split")
        return SynthBirds(src.split, src.variant, seed=src.seed, per_class=src.per_class, progress=progress,  # type: ignore[arg-type]
                          **({"size": src.size} if src.size else {}))
    if src.kind == "synthherd":
        from .data import SynthHerd

        if src.split == "all":
            raise ConfigError("data: SynthHerd has splits 'train' and 'test' only", field="data.split")
        kw: dict[str, Any] = {"size": src.size} if src.size else {}
        if src.per_class:
            kw["photos"] = src.per_class
        return SynthHerd(src.split, seed=src.seed, progress=progress, **kw)  # type: ignore[arg-type]
    from .data import CUB200, ImageFolder, default_transform

    assert src.root is not None
    tf = default_transform(src.size, round(src.size * 256 / 224)) if src.size else None
    if src.kind == "imagefolder":
        return ImageFolder(src.root, transform=tf)
    return CUB200(src.root, src.split, transform=tf)  # type: ignore[arg-type]


def source_size(source: DataSource | str | dict[str, Any]) -> int:
    """Number of items, without generating synthetic images (a driver that only hands out ids needs no more)."""
    src = DataSource.parse(source)
    if src.kind == "synthbirds":
        from .data import SynthBirds

        per = src.per_class if src.per_class is not None else (30 if src.split == "train" else 10)
        return per * int(SynthBirds.__init__.__kwdefaults__["num_classes"])
    if src.kind == "synthherd":
        from .data import SynthHerd

        kw = SynthHerd.__init__.__kwdefaults__
        individuals = 80 if src.split == "train" else 40
        return individuals * (src.per_class or int(kw["photos"]))
    return len(load_source(src))


def item_path(data: Any, i: int, source: DataSource | None = None) -> str:
    """Where item ``i`` comes from: its file for data on disk, else ``kind/split/i`` for generated data."""
    paths = getattr(data, "paths", None)
    if paths is not None:
        return str(Path(paths[i]))
    name = source.label().replace(":", "/") if source is not None else type(data).__name__.lower()
    return f"{name}/{i:06d}"
