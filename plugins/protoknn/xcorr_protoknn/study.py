"""Summaries of the seeded study (``scripts/protoknn_study.py`` writes ``weights/study.json``):
mean and 95 % t-interval over seeds of every row's accuracies and prototype variance."""
from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

from xcorr_core.stats import t_interval as mean_t_interval

__all__ = ["study_path", "load_study", "summarise", "ROW_NAMES"]

ROW_NAMES = {"full": "ProtoKNN (full)", "no_aux": "without L_aux", "most_similar": "L_clst: most similar",
             "sampling": "L_clst: + sampling", "debias": "L_clst: + de-bias", "assignment": "L_clst: + assignment"}


def study_path() -> Path:
    return Path(str(resources.files("xcorr_protoknn") / "weights" / "study.json"))


def load_study(path: str | Path | None = None) -> list[dict[str, Any]]:
    p = Path(path) if path is not None else study_path()
    return json.loads(p.read_text())["runs"] if p.is_file() else []


def summarise(runs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """row -> {"seeds": n, metric: (mean, half-width)} for clean/sticker/style k = 1, 3, 5, 10,
    the linear head and the prototype variance."""
    out: dict[str, dict[str, Any]] = {}
    for row in ROW_NAMES:
        rs = [r for r in runs if r["row"] == row]
        if not rs:
            continue
        entry: dict[str, Any] = {"seeds": len(rs), "steps": sorted({r["steps"] for r in rs})}
        for v in ("clean", "sticker", "style"):
            for key in ("k=1", "k=3", "k=5", "k=10", "linear_head"):
                entry[f"{v} {key}"] = mean_t_interval([r[v][key] for r in rs])
        entry["variance"] = mean_t_interval([r["variance"] for r in rs])
        out[row] = entry
    return out
