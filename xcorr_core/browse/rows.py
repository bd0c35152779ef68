"""The browser's data, computed from a job's results table: one table row per query, its detail
(neighbours, correspondences), and the summaries (accuracy with intervals, confusion counts, the
queries a re-ranker fixes or breaks). Pure functions of the Parquet rows and the gallery's labels,
so the unit tests compare them with the table itself. Depends on the core's stats module only.
"""
from __future__ import annotations

import math
from typing import Any

from ..stats import wilson_interval

__all__ = ["job_methods", "job_metrics", "true_rank", "table_columns", "detail_rows", "summaries"]


def job_methods(names: list[str]) -> list[str]:
    """The methods of a results schema: ``knn`` first, then the re-rankers in column order."""
    methods = [n[: -len("_prediction")] for n in names if n.endswith("_prediction")]
    return sorted(methods, key=lambda m: (m != "knn", methods.index(m)))


def job_metrics(names: list[str], methods: list[str]) -> list[str]:
    """The metric names of a results schema (columns ``METHOD__METRIC``), in column order."""
    out: list[str] = []
    for m in methods:
        for n in names:
            if n.startswith(f"{m}__") and n[len(m) + 2:] not in out:
                out.append(n[len(m) + 2:])
    return out


def _finite(x: Any) -> Any:
    """JSON has no NaN: a missing or non-finite value becomes None."""
    return None if x is None or (isinstance(x, float) and not math.isfinite(x)) else x


def true_rank(ids: list[int] | None, label: int, gallery_labels: Any) -> int | None:
    """1-based position of the first neighbour of the true class in ``ids`` (best first), or None
    when none of them has it."""
    for pos, g in enumerate(ids or (), 1):
        if int(gallery_labels[g]) == label:
            return pos
    return None


def table_columns(cols: dict[str, list[Any]], methods: list[str], metrics: list[str], gallery_labels: Any) -> dict[str, list[Any]]:
    """The table's columns, one value per query in the order of ``cols`` (a results table as
    ``to_pydict()``).

    ``id``, ``label``, ``path``; per method M: ``M_pred``, ``M_conf``, ``M_rank`` (`true_rank` among
    M's k neighbours); per re-ranker also ``M_rank_change``: kNN's rank minus M's, a rank of None
    counted as k + 1 (positive: re-ranking moved the true class up); per method and metric ``M__X``."""
    labels = cols["label"]
    out: dict[str, list[Any]] = {"id": list(cols["query_id"]), "label": list(labels), "path": list(cols["path"])}
    ranks: dict[str, list[int | None]] = {}
    for m in methods:
        out[f"{m}_pred"] = list(cols[f"{m}_prediction"])
        out[f"{m}_conf"] = [_finite(c) for c in cols[f"{m}_confidence"]]
        ranks[m] = [true_rank(ids, lab, gallery_labels) for ids, lab in zip(cols[f"{m}_ids"], labels)]
        out[f"{m}_rank"] = ranks[m]
        for x in metrics:
            if f"{m}__{x}" in cols:
                out[f"{m}__{x}"] = [_finite(v) for v in cols[f"{m}__{x}"]]
    if "knn" in methods:
        for m in methods:
            if m == "knn":
                continue
            change = []
            for a, b, ka, kb in zip(ranks["knn"], ranks[m], cols["knn_ids"], cols[f"{m}_ids"]):
                change.append((a if a is not None else len(ka or ()) + 1) - (b if b is not None else len(kb or ()) + 1))
            out[f"{m}_rank_change"] = change
    return out


def detail_rows(cols: dict[str, list[Any]], methods: list[str], gallery_labels: Any, figures: dict[int, dict[str, list[str]]]) -> list[dict[str, Any]]:
    """Per query, what its detail view draws: per method its k neighbours (``ids``, ``scores``,
    gallery ``labels``), for re-rankers their patch ``pairs`` (per neighbour, ``[query cell,
    neighbour cell]``, cells flattened ``h * W + w``) and pair ``weights``, and the explanation
    ``figures`` rendered for it (paths relative to the site)."""
    rows = []
    for r, qid in enumerate(cols["query_id"]):
        d: dict[str, Any] = {"id": qid}
        for m in methods:
            ids = cols[f"{m}_ids"][r] or []
            entry: dict[str, Any] = {"ids": ids, "scores": [_finite(s) for s in cols[f"{m}_scores"][r] or []],
                                     "labels": [int(gallery_labels[g]) for g in ids]}
            if f"{m}_pairs" in cols:
                entry["pairs"] = cols[f"{m}_pairs"][r] or []
                entry["weights"] = [[_finite(w) for w in ws] for ws in cols[f"{m}_weights"][r] or []]
            entry["figures"] = figures.get(qid, {}).get(m, [])
            d[m] = entry
        rows.append(d)
    return rows


def summaries(cols: dict[str, list[Any]], methods: list[str], metrics: list[str]) -> dict[str, Any]:
    """Per method: accuracy with its 95% Wilson interval, the confusion counts ``[[true, pred,
    count], ...]`` (sorted by count, largest first), the metrics' means; per re-ranker the number of
    queries it fixes (right where kNN is wrong) and breaks (wrong where kNN is right)."""
    labels = cols["label"]
    n = len(labels)
    out: dict[str, Any] = {"queries": n, "methods": {}}
    right = {m: [p == y for p, y in zip(cols[f"{m}_prediction"], labels)] for m in methods}
    for m in methods:
        k = sum(right[m])
        lo, hi = wilson_interval(k, n) if n else (math.nan, math.nan)
        conf: dict[tuple[int, int], int] = {}
        for y, p in zip(labels, cols[f"{m}_prediction"]):
            conf[(y, p)] = conf.get((y, p), 0) + 1
        row: dict[str, Any] = {"correct": k, "accuracy": k / n if n else None, "ci95": [_finite(lo), _finite(hi)],
                               "confusion": [[y, p, c] for (y, p), c in sorted(conf.items(), key=lambda kv: (-kv[1], kv[0]))],
                               "metrics": {}}
        for x in metrics:
            vals = [v for v in cols.get(f"{m}__{x}", []) if v is not None and math.isfinite(v)]
            row["metrics"][x] = sum(vals) / len(vals) if vals else None
        if m != "knn" and "knn" in methods:
            row["fixes"] = sum(a and not b for a, b in zip(right[m], right["knn"]))
            row["breaks"] = sum(b and not a for a, b in zip(right[m], right["knn"]))
        out["methods"][m] = row
    return out
