"""Human-study data as typed tables: trial tables and AI-only predictions (`loading` reads them
from files).

A trial table has one row per (user, trial): who, which query, which explanation arm,
whether the AI's label was right, the confidence shown, and whether the user's answer
was right. Users answered "is the AI's label correct?", so the user *accepted* the AI's
label exactly when ``user_correct == ai_correct``. Column names are configurable
(`ColumnMap`) so other studies' CSVs load too. Depends on numpy, pydantic and xcorr_core.
"""
from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from xcorr_core.errors import InputError

__all__ = ["ColumnMap", "TrialRow", "TrialTable", "AIPredictions", "CUB_ARMS", "CUB_AI_METHODS"]

#: explanation arms of the CUB study, in the paper's Table 2 order
CUB_ARMS = ("ResNet-50", "kNN", "EMD-NN", "EMD-Corr", "CHM-NN", "CHM-Corr")
#: AI-only prediction columns -> the study arm that showed that classifier (Table 3)
CUB_AI_METHODS = {"resnet": "ResNet-50", "knn": "kNN", "emd": "EMD-Corr", "chm": "CHM-Corr"}


def _binary(text: str) -> bool | None:
    """``0``/``1`` (also ``0.0``/``1.0``) or ``True``/``False`` (any case) as a bool; None otherwise."""
    t = text.strip()
    if t in ("0", "1", "0.0", "1.0"):
        return float(t) == 1.0
    if t.lower() in ("true", "false"):
        return t.lower() == "true"
    return None


class ColumnMap(BaseModel):
    """Which CSV column holds each field (defaults: the CUB study of the EMD/CHM-Corr paper)."""

    model_config = ConfigDict(extra="forbid")
    user: str = "UID"
    query: str = "Query"
    arm: str = "Method"
    ai_correct: str = "ClassifierCorrectness"
    confidence: str = "ConfidenceScore"
    user_correct: str = "Correctness"


class TrialRow(BaseModel):
    """One validated trial."""

    model_config = ConfigDict(extra="forbid")
    user: str = Field(min_length=1)
    query: str = Field(min_length=1)
    arm: str = Field(min_length=1)
    ai_correct: bool
    confidence: float = Field(ge=0.0, le=1.0)
    user_correct: bool

    @field_validator("ai_correct", "user_correct", mode="before")
    @classmethod
    def _binary(cls, v: object) -> object:
        if isinstance(v, str):
            b = _binary(v)
            if b is None:
                raise ValueError(f"expected 0/1 or True/False, got {v!r}")
            return b
        return v

    @property
    def accepted(self) -> bool:
        """The user accepted the AI's label."""
        return self.user_correct == self.ai_correct


class TrialTable:
    """Trials as aligned numpy arrays (length T), with users, arms and queries coded as integers.

    Columnar, so that a study of a million trials takes tens of MB and `subset` is a numpy slice:
    no per-trial Python object is kept. Build one with `from_columns` (or from a list of
    `TrialRow`, for small hand-made tables).

    Attributes:
        users: user ids, sorted; ``user[t]`` indexes it.
        arms: arm names in order of first appearance; ``arm[t]`` indexes it.
        user, arm: int `[T]`.
        queries: query names; ``query_code[t]`` indexes it (``query`` gives the T names).
        ai_correct, user_correct: bool `[T]`.
        confidence: float `[T]`, the AI confidence shown.
    """

    def __init__(self, rows: list[TrialRow], source: str = "") -> None:
        if not rows:
            raise InputError(f"no trials in {source or 'the table'}")
        self._set(source, [r.user for r in rows], [r.arm for r in rows], [r.query for r in rows],
                  np.array([r.ai_correct for r in rows], dtype=bool), np.array([r.confidence for r in rows], dtype=np.float64),
                  np.array([r.user_correct for r in rows], dtype=bool))

    @classmethod
    def from_columns(cls, user: list[str] | np.ndarray, arm: list[str] | np.ndarray, query: list[str] | np.ndarray,
                     ai_correct: np.ndarray, confidence: np.ndarray, user_correct: np.ndarray, source: str = "") -> "TrialTable":
        """A table from T-long columns of ids/names (str) and values; checks lengths and ranges."""
        n = len(user)
        if n == 0:
            raise InputError(f"no trials in {source or 'the table'}")
        if not all(len(c) == n for c in (arm, query, ai_correct, confidence, user_correct)):
            raise InputError("trial columns must all have one length")
        conf = np.asarray(confidence, dtype=np.float64)
        bad = np.flatnonzero(~((conf >= 0.0) & (conf <= 1.0)))
        if bad.size:
            raise InputError(f"confidence must lie in [0, 1]; trial {int(bad[0])} has {conf[bad[0]]!r}")
        table = cls.__new__(cls)
        table._set(source, user, arm, query, np.asarray(ai_correct, dtype=bool), conf, np.asarray(user_correct, dtype=bool))
        return table

    def _set(self, source: str, user: Any, arm: Any, query: Any, ai_correct: np.ndarray, confidence: np.ndarray,
             user_correct: np.ndarray) -> None:
        codes = [np.unique(np.asarray(c, dtype=object).astype(str), return_inverse=True) for c in (user, arm, query)]
        for (names, _), field in zip(codes, ("user", "arm", "query")):
            if names.size and names[0] == "":  # sorted: an empty name comes first
                raise InputError(f"an empty {field} name in {source or 'the table'}")
        self._set_coded(source, *[(names.tolist(), code) for names, code in codes], ai_correct, confidence, user_correct)

    def _set_coded(self, source: str, user: tuple[list[str], np.ndarray], arm: tuple[list[str], np.ndarray],
                   query: tuple[list[str], np.ndarray], ai_correct: np.ndarray, confidence: np.ndarray, user_correct: np.ndarray) -> None:
        """Store (names, codes `[T]`) columns, keeping only the names some trial uses: users sorted
        by id, arms in order of first appearance, queries sorted by code."""
        self.source = source
        names, code = user
        present = np.unique(code)
        order = present[np.argsort(np.array([names[i] for i in present], dtype=object).astype(str), kind="stable")]
        self.users = [names[i] for i in order]
        self.user = _recode(order, code, len(names))
        names, code = arm
        present, first = np.unique(code, return_index=True)
        order = present[np.argsort(first, kind="stable")]
        self.arms = [names[i] for i in order]
        self.arm = _recode(order, code, len(names))
        names, code = query
        present = np.unique(code)
        self.queries = [names[i] for i in present]
        self.query_code = _recode(present, code, len(names))
        self.ai_correct, self.confidence, self.user_correct = ai_correct, confidence, user_correct
        self._check_between_subjects()

    def _check_between_subjects(self) -> None:
        pairs = np.unique(self.user.astype(np.int64) * max(1, len(self.arms)) + self.arm)
        per_user = np.bincount(pairs // max(1, len(self.arms)), minlength=len(self.users))
        mixed = np.flatnonzero(per_user > 1)
        if mixed.size:
            raise InputError(f"user {self.users[mixed[0]]!r} appears in more than one arm; a between-subjects design is assumed")

    def __len__(self) -> int:
        return len(self.user)

    @property
    def query(self) -> list[str]:
        """The T query names (built on demand; `query_code` and `queries` are the stored form)."""
        return [self.queries[i] for i in self.query_code]

    @property
    def accepted(self) -> np.ndarray:
        """bool `[T]`: the user accepted the AI's label (said "yes, correct")."""
        return self.user_correct == self.ai_correct

    def rows(self) -> list[TrialRow]:
        """Each trial as a validated `TrialRow` (for small tables: T pydantic objects)."""
        return [TrialRow(user=self.users[u], query=self.queries[q], arm=self.arms[a], ai_correct=bool(c), confidence=float(s),
                         user_correct=bool(k))
                for u, q, a, c, s, k in zip(self.user, self.query_code, self.arm, self.ai_correct, self.confidence, self.user_correct)]

    def subset(self, mask: np.ndarray) -> "TrialTable":
        """The trials where ``mask`` `[T]` is True (users and arms not left are dropped from the codes)."""
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != self.user.shape:
            raise InputError(f"mask must be bool [{len(self)}], got shape {mask.shape}")
        if not mask.any():
            raise InputError(f"no trials in {self.source or 'the table'}")
        out = TrialTable.__new__(TrialTable)
        out._set_coded(self.source, (self.users, self.user[mask]), (self.arms, self.arm[mask]), (self.queries, self.query_code[mask]),
                       self.ai_correct[mask], self.confidence[mask], self.user_correct[mask])
        return out

    def user_accuracy(self) -> np.ndarray:
        """float `[U]`: each user's fraction of correct answers."""
        return np.bincount(self.user, weights=self.user_correct, minlength=len(self.users)) / np.bincount(self.user, minlength=len(self.users))

    def filter_users(self, min_accuracy: float | None = 0.5, *, strict: bool = True, exclude: list[str] | None = None) -> "TrialTable":
        """Drop users at or below ``min_accuracy`` (``strict``; else below it) and those in ``exclude``.

        The authors' analysis keeps users with accuracy > 0.5 (their paper's text says 0.55).
        """
        acc = self.user_accuracy()
        keep_user = np.ones(len(self.users), dtype=bool)
        if min_accuracy is not None:
            keep_user &= acc > min_accuracy if strict else acc >= min_accuracy
        if exclude:
            unknown = sorted(set(exclude) - set(self.users))
            if unknown:
                raise InputError(f"cannot exclude unknown user(s) {unknown[:3]}{' ...' if len(unknown) > 3 else ''}")
            ex = set(exclude)
            keep_user &= np.array([u not in ex for u in self.users])
        return self.subset(keep_user[self.user])

    def arm_mask(self, arm: str) -> np.ndarray:
        if arm not in self.arms:
            raise InputError(f"no arm {arm!r}; arms are {', '.join(self.arms)}")
        return self.arm == self.arms.index(arm)


class AIPredictions(BaseModel):
    """AI-only outcome on a whole test set for one classifier: correct `[n]` and confidence `[n]`."""

    model_config = ConfigDict(arbitrary_types_allowed=True)
    method: str
    correct: np.ndarray
    confidence: np.ndarray

    @property
    def accuracy(self) -> float:
        return float(self.correct.mean())


def _recode(order: np.ndarray, code: np.ndarray, size: int | None = None) -> np.ndarray:
    """Codes under a new order of the names: ``order[new] = old``, so ``result[t] = new of code[t]``."""
    rank = np.full(size if size is not None else order.size, -1, dtype=np.int64)
    rank[order] = np.arange(order.size)
    return rank[np.asarray(code)]
