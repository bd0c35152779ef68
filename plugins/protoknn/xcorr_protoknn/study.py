"""Summaries of the seeded study (``scripts/protoknn_study.py`` writes ``weights/study.json``):
mean and 95 % t-interval over seeds of every row's accuracies and prototype variance."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from xcorr_core.stats import over_seeds

from .pretrained import WEIGHTS

__all__ = ["study_path", "load_study", "summarise", "ROW_NAMES"]

ROW_NAMES = {"full": "ProtoKNN (full)", "no_aux": "without L_aux", "most_similar": "L_clst: most similar",
             "sampling": "L_clst: + sampling", "debias": "L_clst: + de-bias", "assignment": "L_clst: + assignment"}


def study_path() -> Path:
    return WEIGHTS.path("study.json")


def load_study(path: str | Path | None = None) -> list[dict[str, Any]]:
    """The runs of the shipped study (or of the file ``path``); [] when there is none."""
    p = Path(path) if path is not None else study_path()
    return json.loads(p.read_text())["runs"] if p.is_file() else []


def summarise(runs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """row -> {"seeds": n, "steps": [...], metric: (mean, half-width)} for clean/sticker/style k = 1,
    3, 5, 10, the linear head and the prototype variance (`xcorr_core.stats.over_seeds`)."""
    values = {f"{v} {key}": (lambda r, v=v, key=key: r[v][key]) for v in ("clean", "sticker", "style")
              for key in ("k=1", "k=3", "k=5", "k=10", "linear_head")}
    values["variance"] = lambda r: r["variance"]
    table = over_seeds(runs, "row", ROW_NAMES, values)
    return {row: {"seeds": e.pop("seeds"), "steps": sorted({r["steps"] for r in runs if r["row"] == row}), **e}
            for row, e in table.items()}
