"""Reading human-study files: trial tables from CSV (optionally gzipped), AI-only predictions from
CSV or from the authors' pickles (arrays only, never arbitrary objects), and the bundled CUB study.
Malformed rows raise `InputError` naming the file, line and column. Depends on numpy, pydantic,
xcorr_core and this plugin's data module.
"""
from __future__ import annotations

import codecs
import csv
import gzip
import io
import pickle  # only through _ArraysOnly: never a plain pickle.load
import zlib
from array import array
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import ValidationError

from xcorr_core.errors import InputError

from .data import AIPredictions, ColumnMap, TrialRow, TrialTable, _binary

__all__ = ["load_trials", "load_ai_predictions", "load_pickled_predictions", "bundled_paths"]


def _open_text(path: Path) -> io.TextIOBase:
    if not path.is_file():
        raise InputError(f"no such file: {path}")
    # utf-8-sig: a byte-order mark (as spreadsheet programs write) is not part of the first column's name
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8-sig", newline="")
    return open(path, encoding="utf-8-sig", newline="")


def _first_bad_byte(path: Path, chunk: int = 1 << 20) -> tuple[int, int]:
    """(offset in the file's (decompressed) bytes, 1-based line) of the first byte that is not UTF-8.
    The decoder's own offset counts from the start of its current chunk, not of the file."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    offset, lines = 0, 1
    with (gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")) as f:
        while block := f.read(chunk):
            try:
                decoder.decode(block)
            except UnicodeDecodeError as exc:
                pending = len(decoder.getstate()[0])  # bytes of an unfinished character carried over from the last block
                at = offset - pending + exc.start
                return at, lines + block[:max(0, exc.start - pending)].count(b"\n")
            offset += len(block)
            lines += block.count(b"\n")
    return offset, lines


@contextmanager
def _readable(path: Path) -> Iterator[None]:
    """Turn what a broken file raises while being read (bad UTF-8, a corrupt gzip stream, a CSV
    syntax error) into `InputError` naming the file."""
    try:
        yield
    except UnicodeDecodeError as exc:
        at, line = _first_bad_byte(path)
        raise InputError(f"{path} is not UTF-8 text (byte {at}, line {line}): save the CSV as UTF-8") from exc
    except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
        raise InputError(f"{path} is not a readable gzip file: {exc}") from exc
    except csv.Error as exc:
        raise InputError(f"{path} is not a readable CSV file: {exc}") from exc


def _reader(path: Path, needed: dict[str, str]) -> tuple[csv.DictReader, io.TextIOBase]:
    f = _open_text(path)
    reader = csv.DictReader(f)
    header = reader.fieldnames or []
    missing = {field: col for field, col in needed.items() if col not in header}
    if missing:
        f.close()
        desc = ", ".join(f"{col!r} (for {field})" for field, col in missing.items())
        raise InputError(f"{path}: missing column(s) {desc}; the header has: {', '.join(header)}")
    return reader, f


def load_trials(path: str | Path, columns: ColumnMap | None = None) -> TrialTable:
    """Load a trial table from CSV (optionally gzipped), column by column.

    Each row is checked with plain comparisons; only a row that fails them goes through
    `TrialRow`, whose message names the problem. Memory is the columns' (a million trials take
    about 100 MB while loading), not one object per row.

    Raises:
        InputError: missing file or column, or a malformed row (the message names line and column).
    """
    path = Path(path)
    cols = columns or ColumnMap()
    mapping = cols.model_dump()
    fields = list(mapping)
    uix: dict[str, int] = {}
    qix: dict[str, int] = {}
    aix: dict[str, int] = {}
    user, query, arm = array("q"), array("q"), array("q")
    ai_correct = bytearray()
    user_correct = bytearray()
    confidence = array("d")
    with _readable(path):
        reader, f = _reader(path, mapping)
        with f:
            for line, rec in enumerate(reader, start=2):
                u, q, a = rec[mapping["user"]], rec[mapping["query"]], rec[mapping["arm"]]
                c, k = _binary(rec[mapping["ai_correct"]] or ""), _binary(rec[mapping["user_correct"]] or "")
                try:
                    s = float(rec[mapping["confidence"]])
                except (TypeError, ValueError):
                    s = float("nan")
                if not (u and q and a and c is not None and k is not None and 0.0 <= s <= 1.0):
                    _raise_row_error(path, line, rec, mapping, fields)
                user.append(uix.setdefault(u, len(uix)))
                query.append(qix.setdefault(q, len(qix)))
                arm.append(aix.setdefault(a, len(aix)))
                ai_correct.append(c)
                user_correct.append(k)
                confidence.append(s)
    if not user:
        raise InputError(f"no trials in {path}")
    table = TrialTable.__new__(TrialTable)
    table._set_coded(str(path), (list(uix), np.frombuffer(user, dtype=np.int64)), (list(aix), np.frombuffer(arm, dtype=np.int64)),
                     (list(qix), np.frombuffer(query, dtype=np.int64)), np.frombuffer(bytes(ai_correct), dtype=bool),
                     np.frombuffer(confidence, dtype=np.float64), np.frombuffer(bytes(user_correct), dtype=bool))
    return table


def _raise_row_error(path: Path, line: int, rec: dict[str, Any], mapping: dict[str, str], fields: list[str]) -> None:
    """Raise `InputError` for a row that failed the quick checks, with `TrialRow`'s message."""
    try:
        TrialRow(**{field: rec[col] for field, col in mapping.items()})
    except ValidationError as exc:
        err = exc.errors()[0]
        field = str(err["loc"][0])
        raise InputError(f"{path}:{line}: column {mapping[field]!r} ({field}): {err['msg']}; value {rec[mapping[field]]!r}") from exc
    missing = [mapping[f] for f in fields if rec.get(mapping[f]) in (None, "")]
    raise InputError(f"{path}:{line}: malformed row (empty column(s) {missing}); values {[rec.get(mapping[f]) for f in fields]}")


def load_ai_predictions(path: str | Path, methods: list[str] | None = None, *, correct_suffix: str = "_correct",
                        confidence_suffix: str = "_conf") -> dict[str, AIPredictions]:
    """AI-only predictions per method from columns ``<method>_correct`` and ``<method>_conf``
    (0/1 or True/False), in a CSV file — or in the authors' pickle (``.pkl``/``.pickle``), read by a
    restricted unpickler that builds numpy arrays and plain containers only (`load_pickled_predictions`).

    ``methods`` defaults to every prefix that has both columns.
    """
    path = Path(path)
    if path.suffix in (".pkl", ".pickle"):
        return load_pickled_predictions(path, methods, correct_suffix=correct_suffix, confidence_suffix=confidence_suffix)
    with _readable(path), _open_text(path) as f:
        reader = csv.DictReader(f)
        header = reader.fieldnames or []
        found = [h[: -len(correct_suffix)] for h in header if h.endswith(correct_suffix) and h[: -len(correct_suffix)] + confidence_suffix in header]
        methods = methods or found
        for m in methods:
            if m not in found:
                raise InputError(f"{path}: no columns {m + correct_suffix!r} and {m + confidence_suffix!r}; methods found: {', '.join(found)}")
        correct = {m: [] for m in methods}
        conf = {m: [] for m in methods}
        for line, rec in enumerate(reader, start=2):
            for m in methods:
                c, s = rec[m + correct_suffix], rec[m + confidence_suffix]
                b = _binary(c) if isinstance(c, str) else None
                if b is None:
                    raise InputError(f"{path}:{line}: column {m + correct_suffix!r}: expected 0/1 or True/False, got {c!r}")
                try:
                    sv = float(s)
                except (TypeError, ValueError):
                    raise InputError(f"{path}:{line}: column {m + confidence_suffix!r}: not a number: {s!r}") from None
                cv = 1.0 if b else 0.0
                if not 0.0 <= sv <= 1.0:
                    raise InputError(f"{path}:{line}: column {m + confidence_suffix!r}: confidence must be in [0, 1], got {s!r}")
                correct[m].append(cv == 1.0)
                conf[m].append(sv)
    if not methods or not correct[methods[0]]:
        raise InputError(f"{path}: no predictions")
    return {m: AIPredictions(method=m, correct=np.array(correct[m]), confidence=np.array(conf[m])) for m in methods}


class _ArraysOnly(pickle.Unpickler):
    """An unpickler that can build numpy arrays, dtypes and scalars and nothing else: a pickle that
    names any other callable (``os.system``, ...) is refused before anything runs."""

    _ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
                ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"), ("numpy", "ndarray"),
                ("numpy", "dtype"), ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer")}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self._ALLOWED or (module.startswith("numpy") and name.endswith("DType")):
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refused {module}.{name}: only numpy arrays may be unpickled")


def load_pickled_predictions(path: str | Path, methods: list[str] | None = None, *, correct_suffix: str = "_correct",
                             confidence_suffix: str = "_conf") -> dict[str, AIPredictions]:
    """AI-only predictions from a pickle of ``{method: {"correct": array, "confidence" (or "conf"): array}}``
    or ``{"<method>_correct": array, "<method>_conf": array, ...}``, unpickled with numpy arrays only."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"no such file: {path}")
    try:
        with open(path, "rb") as f:
            obj = _ArraysOnly(f).load()
    except pickle.UnpicklingError as exc:
        raise InputError(f"{path}: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - a truncated or foreign file
        raise InputError(f"{path} is not a readable pickle ({type(exc).__name__}: {exc})") from None
    if not isinstance(obj, dict):
        raise InputError(f"{path}: expected a dict of predictions, got {type(obj).__name__}")
    pairs: dict[str, tuple[Any, Any]] = {}
    for k, v in obj.items():
        if isinstance(v, dict):
            conf = v.get("confidence", v.get("conf"))
            if "correct" in v and conf is not None:
                pairs[str(k)] = (v["correct"], conf)
        elif isinstance(k, str) and k.endswith(correct_suffix) and k[: -len(correct_suffix)] + confidence_suffix in obj:
            pairs[k[: -len(correct_suffix)]] = (v, obj[k[: -len(correct_suffix)] + confidence_suffix])
    methods = methods or sorted(pairs)
    out = {}
    for m in methods:
        if m not in pairs:
            raise InputError(f"{path}: no predictions for {m!r}; found: {', '.join(sorted(pairs)) or 'none'}")
        c, s = (np.asarray(a) for a in pairs[m])
        if c.ndim != 1 or c.shape != s.shape or c.size == 0:
            raise InputError(f"{path}: {m!r}: correct and confidence must be non-empty 1-D arrays of one length, got {c.shape}, {s.shape}")
        if not np.isin(c.astype(float), (0.0, 1.0)).all():
            raise InputError(f"{path}: {m!r}: correct must be 0/1 or booleans")
        s = s.astype(np.float64)
        if not (np.isfinite(s).all() and (s >= 0).all() and (s <= 1).all()):
            raise InputError(f"{path}: {m!r}: confidences must lie in [0, 1]")
        out[m] = AIPredictions(method=m, correct=c.astype(bool), confidence=s)
    if not out:
        raise InputError(f"{path}: no predictions")
    return out


def bundled_paths() -> tuple[Path, Path]:
    """The CUB study files shipped with the plugin: ``(trials, ai_predictions)`` (see data/SOURCE.md)."""
    root = Path(str(resources.files("xcorr_human_team_sim") / "data"))
    return root / "cub-human-study.csv.gz", root / "cub-ai-predictions.csv.gz"
