"""Interaction model 1: humans decide every input, seeing the AI's label, confidence and
explanation. Per-arm human accuracy (mean and spread over users, as the paper's Table 2),
accuracy when the AI is right / wrong, rejection rates, and pairwise tests between arms."""
from __future__ import annotations

from itertools import combinations

import numpy as np
from pydantic import BaseModel

from .data import TrialTable
from .stats import Correction, MWMethod, adjust_pvalues, mann_whitney

__all__ = ["ArmSummary", "PairwiseTest", "summarize_arms", "pairwise_tests", "user_accuracies"]


class ArmSummary(BaseModel):
    """Model-1 figures of one arm (percent values are fractions in [0, 1]).

    Attributes:
        accuracy_mean, accuracy_sd: mean and sample SD (ddof 1) of per-user accuracy (Table 2).
        accuracy_when_ai_right, accuracy_when_ai_wrong: over pooled trials.
        reject_rate: fraction of trials where the user rejected the AI's label.
        reject_rate_when_ai_wrong: = accuracy when the AI is wrong (a right answer is a rejection).
    """

    arm: str
    users: int
    trials: int
    accuracy_mean: float
    accuracy_sd: float
    accuracy_pooled: float
    accuracy_when_ai_right: float
    accuracy_when_ai_wrong: float
    reject_rate: float
    ai_accuracy_shown: float


def user_accuracies(table: TrialTable, arm: str) -> np.ndarray:
    """Per-user accuracy `[U_arm]` of one arm's users."""
    mask = table.arm_mask(arm)
    users = np.unique(table.user[mask])
    acc = table.user_accuracy()
    return acc[users]


def summarize_arms(table: TrialTable, arms: list[str] | None = None) -> list[ArmSummary]:
    out = []
    for arm in arms or table.arms:
        m = table.arm_mask(arm)
        ua = user_accuracies(table, arm)
        right, wrong = m & table.ai_correct, m & ~table.ai_correct
        out.append(ArmSummary(
            arm=arm, users=int(ua.size), trials=int(m.sum()),
            accuracy_mean=float(ua.mean()), accuracy_sd=float(ua.std(ddof=1)) if ua.size > 1 else 0.0,
            accuracy_pooled=float(table.user_correct[m].mean()),
            accuracy_when_ai_right=float(table.user_correct[right].mean()) if right.any() else float("nan"),
            accuracy_when_ai_wrong=float(table.user_correct[wrong].mean()) if wrong.any() else float("nan"),
            reject_rate=float((~table.accepted[m]).mean()), ai_accuracy_shown=float(table.ai_correct[m].mean()),
        ))
    return out


class PairwiseTest(BaseModel):
    """Mann-Whitney U test of per-user accuracy between two arms."""

    arm_a: str
    arm_b: str
    mean_difference: float  # mean accuracy of a minus b
    u: float
    p: float
    p_adjusted: float
    method: str  # the Mann-Whitney method that gave p ("exact", "asymptotic" or "permutation")
    correction: str


def pairwise_tests(table: TrialTable, arms: list[str] | None = None, *, method: MWMethod = "auto",
                   correction: Correction = "none", seed: int = 0) -> list[PairwiseTest]:
    """All pairs of arms; ``correction`` adjusts the p-values over the whole family. Each test
    records the method that gave its p (``method="auto"`` picks one per pair, see `mann_whitney`)."""
    arms = arms or table.arms
    acc = {a: user_accuracies(table, a) for a in arms}
    raw = []
    for a, b in combinations(arms, 2):
        u, p, used = mann_whitney(acc[a], acc[b], method, seed=seed)
        raw.append((a, b, float(acc[a].mean() - acc[b].mean()), u, p, used))
    adj = adjust_pvalues([r[4] for r in raw], correction)
    return [PairwiseTest(arm_a=a, arm_b=b, mean_difference=d, u=u, p=p, p_adjusted=float(q), method=used, correction=correction)
            for (a, b, d, u, p, used), q in zip(raw, adj)]
