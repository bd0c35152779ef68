"""Interaction model 2: the AI's decision is auto-accepted when its confidence is >= T;
humans (the study's users of the matching arm) decide the rest.

Team accuracy at T over an AI-only test set of n items:
``(#{conf >= T and AI right} + #{conf < T} * h(T)) / n``, where h(T) is the accuracy of
the arm's (filtered) users on their trials whose shown confidence was < T. This is the
quantity of the authors' notebooks and of the paper's Table 3.

Beyond the authors' split search this module gives the full accuracy-vs-coverage curve,
a cross-validated threshold, bootstrap intervals (AI items and users resampled), and a
test of complementarity (team better than both AI alone and humans alone). Everything is
vectorised over thresholds and bootstrap replicates with numpy.
"""
from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict

from xcorr_core.errors import InputError

from .data import AIPredictions, TrialTable

__all__ = ["HumanTrials", "human_trials", "team_accuracy", "team_curve", "TeamPoint", "ThresholdChoice",
           "authors_threshold", "authors_grid", "cv_threshold", "bootstrap_team", "complementarity", "Complementarity", "default_thresholds"]


def default_thresholds(step: float = 0.05) -> np.ndarray:
    """0, step, ..., 1 (rounded so that 0.45 is 0.45, not 0.45000000000000007)."""
    k = int(round(1.0 / step))
    return np.round(np.arange(k + 1) * step, 10)


class HumanTrials(BaseModel):
    """One arm's trials: correct `[T]`, shown confidence `[T]`, user index `[T]` (0..U-1)."""

    model_config = ConfigDict(arbitrary_types_allowed=True)
    arm: str
    correct: np.ndarray
    confidence: np.ndarray
    user: np.ndarray

    @property
    def n_users(self) -> int:
        return int(self.user.max()) + 1 if self.user.size else 0

    @property
    def accuracy(self) -> float:
        """Pooled trial accuracy (the human-alone end of the team curve)."""
        return float(self.correct.mean())


def human_trials(table: TrialTable, arm: str) -> HumanTrials:
    m = table.arm_mask(arm)
    _, user = np.unique(table.user[m], return_inverse=True)
    return HumanTrials(arm=arm, correct=table.user_correct[m], confidence=table.confidence[m], user=user)


def _check(ai: AIPredictions, humans: HumanTrials) -> None:
    if ai.correct.size == 0:
        raise InputError("no AI predictions")
    if humans.correct.size == 0:
        raise InputError(f"no human trials for arm {humans.arm!r}")


def _counts(ai: AIPredictions, humans: HumanTrials, thresholds: np.ndarray):
    """Per threshold: AI hits and deferred items per AI item, human right/total per user."""
    T = np.asarray(thresholds, dtype=float)[:, None]
    auto = ai.confidence[None, :] >= T  # [K, n]
    hits = (auto & ai.correct[None, :]).astype(float)  # [K, n]
    rest = (~auto).astype(float)
    below = humans.confidence[None, :] < T  # [K, t]
    U = humans.n_users
    right_u = np.stack([np.bincount(humans.user, weights=(b & humans.correct), minlength=U) for b in below])  # [K, U]
    total_u = np.stack([np.bincount(humans.user, weights=b, minlength=U) for b in below])
    return hits, rest, right_u, total_u


def _team(ai_hits: np.ndarray, ai_rest: np.ndarray, n: np.ndarray | float, h_right: np.ndarray, h_total: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        h = np.where(h_total > 0, h_right / h_total, np.nan)
    human_part = np.where(ai_rest > 0, ai_rest * h, 0.0)  # nothing deferred: humans not needed
    return (ai_hits + human_part) / n


class TeamPoint(BaseModel):
    """The team at one threshold."""

    threshold: float
    coverage: float  # fraction of inputs auto-accepted
    team_accuracy: float  # NaN when inputs are deferred but no human trial lies below the threshold
    ai_accuracy_auto: float  # AI accuracy on the auto-accepted inputs
    human_accuracy_rest: float  # human accuracy on trials below the threshold
    human_trials: int


def team_curve(ai: AIPredictions, humans: HumanTrials, thresholds: np.ndarray | None = None) -> list[TeamPoint]:
    """Team accuracy and coverage at each threshold (default 0, 0.05, ..., 1)."""
    _check(ai, humans)
    th = default_thresholds() if thresholds is None else np.asarray(thresholds, dtype=float)
    hits, rest, hr, ht = _counts(ai, humans, th)
    n = ai.correct.size
    team = _team(hits.sum(1), rest.sum(1), n, hr.sum(1), ht.sum(1))
    out = []
    for k, t in enumerate(th):
        auto = n - rest[k].sum()
        out.append(TeamPoint(threshold=float(t), coverage=float(auto / n), team_accuracy=float(team[k]),
                             ai_accuracy_auto=float(hits[k].sum() / auto) if auto else float("nan"),
                             human_accuracy_rest=float(hr[k].sum() / ht[k].sum()) if ht[k].sum() else float("nan"),
                             human_trials=int(ht[k].sum())))
    return out


def team_accuracy(ai: AIPredictions, humans: HumanTrials, threshold: float) -> float:
    """Team accuracy at one threshold."""
    return team_curve(ai, humans, np.array([threshold]))[0].team_accuracy


def _best(acc: np.ndarray, thresholds: np.ndarray) -> int:
    """Index of the highest accuracy; ties go to the lowest threshold (most automation)."""
    a = np.where(np.isnan(acc), -np.inf, acc)
    return int(np.flatnonzero(a == a.max())[0])


class ThresholdChoice(BaseModel):
    """A chosen threshold and how it was chosen and scored."""

    method: str
    threshold: float
    selection_accuracy: float  # the criterion's value on the data used to choose (team accuracy, or the authors' agreement)
    reported_accuracy: float  # on held-out data (split / cross-validation)
    full_set_accuracy: float  # on all AI items and all users at that threshold
    details: dict = {}


def _subset(ai: AIPredictions, idx: np.ndarray) -> AIPredictions:
    return AIPredictions(method=ai.method, correct=ai.correct[idx], confidence=ai.confidence[idx])


def _user_subset(humans: HumanTrials, users: np.ndarray) -> HumanTrials:
    keep = np.isin(humans.user, users)
    _, u = np.unique(humans.user[keep], return_inverse=True)
    return HumanTrials(arm=humans.arm, correct=humans.correct[keep], confidence=humans.confidence[keep], user=u)


def authors_grid(step: float = 0.05) -> np.ndarray:
    """The authors' thresholds: ``np.arange`` values as they are (0.15000000000000002, ...), so an
    item whose confidence equals a nominal threshold such as 0.15 falls below it."""
    return np.arange(0.0, 1.0 + step / 2, step)


def authors_threshold(ai: AIPredictions, humans: HumanTrials, *, seed: int = 42, n_pick: int = 1000, n_report: int = 4000,
                      step: float = 0.05, criterion: Literal["agreement", "team_accuracy"] = "agreement",
                      grid: Literal["arange", "rounded"] = "arange") -> ThresholdChoice:
    """The authors' split procedure: shuffle the AI-only items with ``seed``, choose T on the first
    ``n_pick``, report team accuracy on the next ``n_report`` (humans: all trials).

    ``criterion``: ``"agreement"`` (the authors') — T maximises the mean of
    ``correct == (confidence >= T)`` over the pick items, ties to the highest T;
    ``"team_accuracy"`` — T maximises the team accuracy on the pick items, ties to the lowest T
    (this plugin's earlier rule). ``grid``: ``"arange"`` (the authors' float values, `authors_grid`)
    or ``"rounded"`` (0.15 is 0.15, `default_thresholds`).

    The shuffle here is ``numpy.random.RandomState(seed).permutation``; the authors' exact
    random draw is not recoverable from the paper, so the split (not the procedure) may differ.
    """
    _check(ai, humans)
    n = ai.correct.size
    if n_pick + n_report > n:
        raise InputError(f"n_pick + n_report = {n_pick + n_report} exceeds the {n} AI items")
    if criterion not in ("agreement", "team_accuracy") or grid not in ("arange", "rounded"):
        raise InputError(f"criterion must be 'agreement' or 'team_accuracy' and grid 'arange' or 'rounded', got {criterion!r}, {grid!r}")
    perm = np.random.RandomState(seed).permutation(n)
    pick, report = perm[:n_pick], perm[n_pick:n_pick + n_report]
    th = authors_grid(step) if grid == "arange" else default_thresholds(step)
    if criterion == "agreement":
        sub = _subset(ai, pick)
        sel = (sub.correct[None, :] == (sub.confidence[None, :] >= th[:, None])).mean(1)
        k = int(np.flatnonzero(sel == sel.max())[-1])  # ties: the highest threshold
        method = "authors_split"
    else:
        sel = np.array([p.team_accuracy for p in team_curve(_subset(ai, pick), humans, th)])
        k = _best(sel, th)
        method = "team_accuracy_split"
    t = float(th[k])
    return ThresholdChoice(method=method, threshold=t, selection_accuracy=float(sel[k]),
                           reported_accuracy=team_accuracy(_subset(ai, report), humans, t) if report.size else float("nan"),
                           full_set_accuracy=team_accuracy(ai, humans, t),
                           details={"seed": seed, "n_pick": n_pick, "n_report": n_report, "criterion": criterion, "grid": grid})


def cv_threshold(ai: AIPredictions, humans: HumanTrials, *, folds: int = 5, seed: int = 0, step: float = 0.05) -> ThresholdChoice:
    """Cross-validated threshold: in each fold, T is chosen on the other folds' AI items *and
    users* and scored on the held-out items and users; ``reported_accuracy`` is the mean
    held-out team accuracy (an honest estimate for the whole selection procedure), and the
    returned threshold is the one chosen on all data. ``folds`` is capped at the number of users."""
    _check(ai, humans)
    folds = min(folds, humans.n_users)  # every fold needs held-out users
    if folds < 2:
        raise InputError(f"cross-validation needs >= 2 folds and >= 2 users; arm {humans.arm!r} has {humans.n_users} user(s)")
    rng = np.random.default_rng(seed)
    item_fold = rng.permutation(ai.correct.size) % folds
    user_fold = rng.permutation(humans.n_users) % folds
    th = default_thresholds(step)
    held, picks = [], []
    for f in range(folds):
        tr_ai, te_ai = _subset(ai, np.flatnonzero(item_fold != f)), _subset(ai, np.flatnonzero(item_fold == f))
        tr_h = _user_subset(humans, np.flatnonzero(user_fold != f))
        te_h = _user_subset(humans, np.flatnonzero(user_fold == f))
        acc = np.array([p.team_accuracy for p in team_curve(tr_ai, tr_h, th)])
        t = float(th[_best(acc, th)])
        picks.append(t)
        held.append(team_accuracy(te_ai, te_h, t))
    full = np.array([p.team_accuracy for p in team_curve(ai, humans, th)])
    k = _best(full, th)
    return ThresholdChoice(method=f"{folds}-fold cross-validation", threshold=float(th[k]), selection_accuracy=float(full[k]),
                           reported_accuracy=float(np.nanmean(held)), full_set_accuracy=float(full[k]),
                           details={"fold_thresholds": picks, "fold_accuracies": held, "seed": seed})


def bootstrap_team(ai: AIPredictions, humans: HumanTrials, thresholds: np.ndarray, *, n_boot: int = 2000, seed: int = 0,
                   chunk_bytes: float = 64e6) -> dict[str, np.ndarray]:
    """Bootstrap replicates `[B, K]` of team accuracy at each threshold, and of AI-alone and
    human-alone accuracy `[B]`. AI items are resampled, and users (with all their trials)
    are resampled as clusters. ``chunk_bytes`` bounds each chunk of AI-item weights."""
    _check(ai, humans)
    rng = np.random.default_rng(seed)
    n, U = ai.correct.size, humans.n_users
    th = np.asarray(thresholds, dtype=float)
    hits, rest, hr, ht = _counts(ai, humans, th)
    # the AI-item weights [B, n] are drawn and reduced in chunks of replicates (bounded memory: 44k items x
    # 2000 replicates would be 700 MB a copy); the draws are the same as in one call, so are the results
    chunk = max(1, min(n_boot, int(chunk_bytes // (8 * max(n, 1)))))
    p_ai = np.full(n, 1.0 / n)
    ai_hits, ai_rest, ai_right = [], [], []
    correct = ai.correct.astype(float)
    for b0 in range(0, n_boot, chunk):
        w_ai = rng.multinomial(n, p_ai, size=min(chunk, n_boot - b0)).astype(float)  # [b, n]
        ai_hits.append(w_ai @ hits.T)
        ai_rest.append(w_ai @ rest.T)
        ai_right.append(w_ai @ correct)
        del w_ai
    w_u = rng.multinomial(U, np.full(U, 1.0 / U), size=n_boot).astype(float)  # [B, U]
    team = _team(np.concatenate(ai_hits), np.concatenate(ai_rest), n, w_u @ hr.T, w_u @ ht.T)  # [B, K]
    ai_alone = np.concatenate(ai_right) / n
    right_all = np.bincount(humans.user, weights=humans.correct, minlength=U)
    total_all = np.bincount(humans.user, minlength=U).astype(float)
    human_alone = (w_u @ right_all) / (w_u @ total_all)
    return {"team": team, "ai_alone": ai_alone, "human_alone": human_alone}


class Complementarity(BaseModel):
    """Is the team better than both the AI alone and the humans alone?

    Attributes:
        margin: team - max(AI alone, humans alone), on the full data.
        ci: bootstrap percentile interval of the margin.
        p_value: one-sided bootstrap p-value of "margin <= 0" ((1 + #replicates <= 0) / (B + 1)).
        complementary: margin > 0 and p_value < alpha.
    """

    arm: str
    threshold: float
    team: float
    team_ci: tuple[float, float]
    ai_alone: float
    human_alone: float
    margin: float
    ci: tuple[float, float]
    p_value: float
    complementary: bool
    level: float
    n_boot: int


def complementarity(ai: AIPredictions, humans: HumanTrials, threshold: float, *, n_boot: int = 2000, level: float = 0.95,
                    alpha: float = 0.05, seed: int = 0) -> Complementarity:
    """Test complementarity at a given threshold. Choose the threshold on other data (a split
    or cross-validation): choosing it on the same data biases the margin upwards."""
    boot = bootstrap_team(ai, humans, np.array([threshold]), n_boot=n_boot, seed=seed)
    team = team_accuracy(ai, humans, threshold)
    ai_alone, human_alone = ai.accuracy, humans.accuracy
    margin_b = boot["team"][:, 0] - np.maximum(boot["ai_alone"], boot["human_alone"])
    margin_b = margin_b[~np.isnan(margin_b)]
    q = [(1 - level) / 2 * 100, (1 + level) / 2 * 100]
    ci = tuple(float(v) for v in np.percentile(margin_b, q))
    tci = tuple(float(v) for v in np.nanpercentile(boot["team"][:, 0], q))
    p = float((1 + np.sum(margin_b <= 0)) / (margin_b.size + 1))
    margin = team - max(ai_alone, human_alone)
    return Complementarity(arm=humans.arm, threshold=threshold, team=team, team_ci=tci, ai_alone=ai_alone, human_alone=human_alone,
                           margin=margin, ci=ci, p_value=p, complementary=bool(margin > 0 and p < alpha), level=level, n_boot=n_boot)
