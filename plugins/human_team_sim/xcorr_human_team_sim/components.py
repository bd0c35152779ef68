"""The plugin's study-level statistics (`xcorr_core.Statistic`: one value per study, never per
query; a pipeline spec refuses them). They take study data as keyword arguments:
``trials`` (a `TrialTable`) and ``ai`` (a dict of `AIPredictions` by method)."""
from __future__ import annotations

from typing import Any, ClassVar, Literal

import numpy as np
import torch
from pydantic import Field
from scipy import stats

import xcorr_core as xc

from .data import AIPredictions, TrialTable
from .model1 import user_accuracies
from .model2 import authors_threshold, bootstrap_team, complementarity, cv_threshold, human_trials, team_curve
from .simulate import ArmAssumption, power

__all__ = ["HumanAccuracy", "TeamAccuracy", "TeamComplementarity", "StudyPower"]


def _table(data: dict[str, Any], min_accuracy: float | None) -> TrialTable:
    t = data.get("trials")
    if not isinstance(t, TrialTable):
        raise xc.InputError("pass trials=TrialTable (see xcorr_human_team_sim.load_trials)")
    return t.filter_users(min_accuracy) if min_accuracy is not None else t


def _ai(data: dict[str, Any], method: str) -> AIPredictions:
    ai = data.get("ai")
    if not isinstance(ai, dict) or method not in ai:
        raise xc.InputError(f"pass ai={{method: AIPredictions}} including {method!r} (see load_ai_predictions)")
    return ai[method]


class HumanAccuracy(xc.Statistic):
    """Interaction model 1: mean per-user accuracy of an arm's users, with a t interval."""

    name = "human_accuracy"
    summary = "Model 1: mean per-user human accuracy of an arm (t interval over users)"
    requires: ClassVar[frozenset[str]] = frozenset({"trials"})

    class Config(xc.StrictConfig):
        arm: str
        min_accuracy: float | None = Field(0.5, description="drop users at or below this accuracy (authors: 0.5)")
        ci_level: float = Field(0.95, gt=0, lt=1)

    def compute(self, **data: Any) -> xc.MetricResult:
        acc = user_accuracies(_table(data, self.config.min_accuracy), self.config.arm)
        n, mean = acc.size, float(acc.mean())
        half = float(stats.t.ppf(0.5 + self.config.ci_level / 2, n - 1) * acc.std(ddof=1) / np.sqrt(n)) if n > 1 else float("nan")
        return xc.MetricResult(name=self.name, value=mean, per_sample=torch.from_numpy(acc), n=n,
                               ci=(mean - half, mean + half) if n > 1 else None, ci_level=self.config.ci_level if n > 1 else None,
                               details={"arm": self.config.arm, "sd": float(acc.std(ddof=1)) if n > 1 else 0.0})


class _TeamConfig(xc.StrictConfig):
    """Fields shared by the model-2 metrics."""

    arm: str
    ai_method: str
    min_accuracy: float | None = Field(0.5, description="drop users at or below this accuracy (authors: 0.5)")
    n_boot: int = Field(2000, ge=100)
    seed: int = 0


class TeamAccuracy(xc.Statistic):
    """Interaction model 2: team accuracy at a threshold (given, the authors' split search, or
    cross-validated), with a bootstrap interval (AI items and users resampled)."""

    name = "team_accuracy"
    summary = "Model 2: human-AI team accuracy with AI auto-accepting confident decisions (bootstrap CI)"
    requires: ClassVar[frozenset[str]] = frozenset({"trials", "ai"})

    class Config(_TeamConfig):
        threshold: float | Literal["authors", "cv"] = Field("cv", description="a number in [0, 1], 'authors' or 'cv'")
        ci_level: float = Field(0.95, gt=0, lt=1)

    def compute(self, **data: Any) -> xc.MetricResult:
        c = self.config
        ai, h = _ai(data, c.ai_method), human_trials(_table(data, c.min_accuracy), c.arm)
        if c.threshold == "authors":
            t = authors_threshold(ai, h).threshold
        elif c.threshold == "cv":
            t = cv_threshold(ai, h, seed=c.seed).threshold
        else:
            if not 0.0 <= float(c.threshold) <= 1.0:
                raise xc.ConfigError(f"threshold must lie in [0, 1], got {c.threshold}", field="threshold")
            t = float(c.threshold)
        point = team_curve(ai, h, np.array([t]))[0]
        boot = bootstrap_team(ai, h, np.array([t]), n_boot=c.n_boot, seed=c.seed)["team"][:, 0]
        q = [(1 - c.ci_level) / 2 * 100, (1 + c.ci_level) / 2 * 100]
        lo, hi = np.nanpercentile(boot, q)
        return xc.MetricResult(name=self.name, value=point.team_accuracy, ci=(float(lo), float(hi)), ci_level=c.ci_level,
                               n=int(ai.correct.size), details={"threshold": t, "coverage": point.coverage, "arm": c.arm,
                                                                "ai_method": c.ai_method})


class TeamComplementarity(xc.Statistic):
    """Is the team better than both the AI alone and the humans alone? Value = margin."""

    name = "team_complementarity"
    summary = "Model 2: team minus max(AI alone, humans alone), with a bootstrap test"
    requires: ClassVar[frozenset[str]] = frozenset({"trials", "ai"})

    class Config(_TeamConfig):
        threshold: float = Field(ge=0.0, le=1.0, description="choose it on other data (e.g. the authors' split or CV)")
        alpha: float = Field(0.05, gt=0, lt=1)

    def compute(self, **data: Any) -> xc.MetricResult:
        c = self.config
        r = complementarity(_ai(data, c.ai_method), human_trials(_table(data, c.min_accuracy), c.arm), c.threshold,
                            n_boot=c.n_boot, alpha=c.alpha, seed=c.seed)
        return xc.MetricResult(name=self.name, value=r.margin, ci=r.ci, ci_level=r.level, n=c.n_boot, details=r.model_dump())


class StudyPower(xc.Statistic):
    """Power of a planned study to detect the difference between two arms (simulation)."""

    name = "study_power"
    summary = "Study design: simulated power of a Mann-Whitney comparison of two arms"
    requires: ClassVar[frozenset[str]] = frozenset()

    class Config(xc.StrictConfig):
        arm_a: ArmAssumption
        arm_b: ArmAssumption
        users: int = Field(60, ge=2, description="users per arm")
        trials: int = Field(30, ge=1, description="trials per user")
        sims: int = Field(2000, ge=100)
        alpha: float = Field(0.05, gt=0, lt=1)
        seed: int = 0

    def compute(self, **data: Any) -> xc.MetricResult:
        c = self.config
        r = power(c.arm_a, c.arm_b, users=c.users, trials=c.trials, sims=c.sims, alpha=c.alpha, seed=c.seed)
        return xc.MetricResult(name=self.name, value=r.power, ci=r.power_ci, ci_level=0.95, n=r.sims, details=r.model_dump())
