"""Summaries of the seeded study (``scripts/protoknn_study.py`` writes ``weights/study.json``):
mean and 95 % t-interval over seeds of every row's accuracies and prototype variance."""
from __future__ import annotations

import json
import math
from importlib import resources
from pathlib import Path
from typing import Any

__all__ = ["study_path", "load_study", "summarise", "ROW_NAMES"]

ROW_NAMES = {"full": "ProtoKNN (full)", "no_aux": "without L_aux", "most_similar": "L_clst: most similar",
             "sampling": "L_clst: + sampling", "debias": "L_clst: + de-bias", "assignment": "L_clst: + assignment"}
#: two-sided 97.5 % quantiles of Student's t for 1..9 degrees of freedom
_T975 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262]


def study_path() -> Path:
    return Path(str(resources.files("xcorr_protoknn") / "weights" / "study.json"))


def load_study(path: str | Path | None = None) -> list[dict[str, Any]]:
    p = Path(path) if path is not None else study_path()
    return json.loads(p.read_text())["runs"] if p.is_file() else []


def _mean_ci(xs: list[float]) -> tuple[float, float]:
    n = len(xs)
    m = sum(xs) / n
    if n < 2:
        return m, float("nan")
    sd = math.sqrt(sum((x - m) ** 2 for x in xs) / (n - 1))
    return m, _T975[min(n - 2, len(_T975) - 1)] * sd / math.sqrt(n)


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
                entry[f"{v} {key}"] = _mean_ci([r[v][key] for r in rs])
        entry["variance"] = _mean_ci([r["variance"] for r in rs])
        out[row] = entry
    return out
