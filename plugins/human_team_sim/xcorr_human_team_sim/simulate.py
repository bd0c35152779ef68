"""Study design by simulation: "how many users do I need?".

A simulated user of an arm sees ``trials`` AI decisions, a fraction ``ai_right_fraction``
of them correct (the CUB study balanced them 15/15), and accepts a right decision with
probability ``accept_if_ai_right`` and a wrong one with ``accept_if_ai_wrong``. Users differ:
each draws a skill ``z ~ N(0, user_sd)`` that raises, on the logit scale, both the chance
of accepting right decisions and of rejecting wrong ones. A user's accuracy is the fraction
of right answers; arms are compared with a two-sided Mann-Whitney U test of per-user
accuracy, as in the paper. Power = fraction of simulated studies with p < alpha.

`assumptions_from_study` estimates these parameters per arm from a real trial table, so a
pilot study can be turned into a sample-size plan. Vectorised over simulations and users.
"""
from __future__ import annotations

import numpy as np
from pydantic import BaseModel, Field
from scipy import stats
from scipy.special import expit, logit

from xcorr_core.errors import InputError

from .data import TrialTable
from .model1 import user_accuracies
from .stats import wilson

__all__ = ["ArmAssumption", "simulate_user_accuracy", "power", "PowerResult", "users_needed", "assumptions_from_study"]


class ArmAssumption(BaseModel):
    """Assumed behaviour of one arm's users."""

    name: str
    accept_if_ai_right: float = Field(ge=0.0, le=1.0)
    accept_if_ai_wrong: float = Field(ge=0.0, le=1.0)
    user_sd: float = Field(0.0, ge=0.0, description="SD of the per-user skill on the logit scale")

    def expected_accuracy(self, ai_right_fraction: float = 0.5) -> float:
        """Mean user accuracy without user variation."""
        return ai_right_fraction * self.accept_if_ai_right + (1 - ai_right_fraction) * (1 - self.accept_if_ai_wrong)


def _clip(p: float) -> float:
    return min(max(p, 1e-6), 1 - 1e-6)


def simulate_user_accuracy(arm: ArmAssumption, *, users: int, trials: int, sims: int, ai_right_fraction: float = 0.5,
                           rng: np.random.Generator) -> np.ndarray:
    """Per-user accuracy of ``sims`` simulated studies: `[sims, users]`."""
    if users < 1 or trials < 1 or sims < 1:
        raise InputError("users, trials and sims must be >= 1")
    n_right = int(round(trials * ai_right_fraction))
    n_wrong = trials - n_right
    z = rng.normal(0.0, arm.user_sd, size=(sims, users)) if arm.user_sd > 0 else np.zeros((sims, users))
    p_acc_right = expit(logit(_clip(arm.accept_if_ai_right)) + z)
    p_rej_wrong = expit(logit(_clip(1 - arm.accept_if_ai_wrong)) + z)
    k = rng.binomial(n_right, p_acc_right) + rng.binomial(n_wrong, p_rej_wrong)
    return k / trials


class PowerResult(BaseModel):
    """Estimated power of a study comparing two arms."""

    arm_a: str
    arm_b: str
    users_per_arm: int
    trials_per_user: int
    alpha: float
    power: float
    power_ci: tuple[float, float]
    sims: int
    expected_difference: float  # difference of expected mean accuracies, a - b


def power(a: ArmAssumption, b: ArmAssumption, *, users: int, trials: int = 30, sims: int = 2000, alpha: float = 0.05,
          ai_right_fraction: float = 0.5, seed: int = 0) -> PowerResult:
    """Power of a two-sided Mann-Whitney U test to tell arms ``a`` and ``b`` apart."""
    rng = np.random.default_rng(seed)
    xa = simulate_user_accuracy(a, users=users, trials=trials, sims=sims, ai_right_fraction=ai_right_fraction, rng=rng)
    xb = simulate_user_accuracy(b, users=users, trials=trials, sims=sims, ai_right_fraction=ai_right_fraction, rng=rng)
    with np.errstate(invalid="ignore"):
        p = stats.mannwhitneyu(xa, xb, axis=1, method="asymptotic").pvalue
    p = np.where(np.isnan(p), 1.0, p)  # all-identical samples: no evidence
    hits = int((p < alpha).sum())
    return PowerResult(arm_a=a.name, arm_b=b.name, users_per_arm=users, trials_per_user=trials, alpha=alpha,
                       power=hits / sims, power_ci=wilson(hits, sims), sims=sims,
                       expected_difference=a.expected_accuracy(ai_right_fraction) - b.expected_accuracy(ai_right_fraction))


def users_needed(a: ArmAssumption, b: ArmAssumption, *, target: float = 0.8, trials: int = 30, alpha: float = 0.05,
                 candidates: list[int] | None = None, sims: int = 1000, seed: int = 0) -> tuple[int | None, list[PowerResult]]:
    """Smallest users-per-arm among ``candidates`` whose power reaches ``target`` (None if none does),
    with the whole power curve."""
    candidates = candidates or [10, 20, 30, 40, 60, 80, 100, 150, 200, 300, 400]
    curve = [power(a, b, users=n, trials=trials, sims=sims, alpha=alpha, seed=seed + i) for i, n in enumerate(candidates)]
    hit = next((r.users_per_arm for r in curve if r.power >= target), None)
    return hit, curve


def assumptions_from_study(table: TrialTable, arm: str, trials: int = 30) -> ArmAssumption:
    """Estimate an arm's accept rates from its trials and the user-skill SD from the spread of
    per-user accuracy beyond binomial noise (method of moments, on the logit scale)."""
    m = table.arm_mask(arm)
    right, wrong = m & table.ai_correct, m & ~table.ai_correct
    acc_r = float(table.accepted[right].mean())
    acc_w = float(table.accepted[wrong].mean())
    ua = user_accuracies(table, arm)
    p = float(ua.mean())
    # within-user (binomial) variance of a balanced design: right and wrong trials have their own rates
    share = float(table.ai_correct[m].mean())
    q_r, q_w = acc_r, 1 - acc_w
    within = (share * q_r * (1 - q_r) + (1 - share) * q_w * (1 - q_w)) / trials
    extra = max(0.0, float(ua.var(ddof=1)) - within)
    # delta method: var(logit p_u) ~ var(p_u) / (p (1 - p))^2
    sd = float(np.sqrt(extra) / max(p * (1 - p), 1e-6))
    return ArmAssumption(name=arm, accept_if_ai_right=acc_r, accept_if_ai_wrong=acc_w, user_sd=sd)
