"""Whole analyses of a study (both interaction models) as one typed report, its text table
and its figure. Used by ``xcorr team``, the demo section and the docs."""
from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import BaseModel

from xcorr_core.errors import InputError

from .data import CUB_AI_METHODS, AIPredictions, TrialTable
from .model1 import ArmSummary, PairwiseTest, pairwise_tests, summarize_arms
from .model2 import Complementarity, ThresholdChoice, authors_threshold, complementarity, cv_threshold, human_trials, team_curve
from .stats import Correction, MWMethod

__all__ = ["TeamReport", "TeamArm", "analyse", "format_report", "plot_team_curves", "PAPER_TABLE2_CUB", "PAPER_TABLE3_CUB",
           "Reference", "REFERENCES"]

#: the paper's CUB figures (percent), for side-by-side comparison
PAPER_TABLE2_CUB = {"ResNet-50": 65.50, "kNN": 64.75, "EMD-NN": 64.12, "EMD-Corr": 67.64, "CHM-NN": 65.72, "CHM-Corr": 69.72}
PAPER_TABLE3_CUB = {"ResNet-50": (0.55, 87.45), "kNN": (0.45, 86.66), "EMD-Corr": (0.45, 86.86), "CHM-Corr": (0.45, 86.25)}


class Reference(BaseModel):
    """A paper's published figures for one study, shown beside ours only when the user names it.

    Attributes:
        table2: arm -> mean per-user human accuracy (%), Table 2.
        table3: arm -> (threshold T or None when the paper does not give it, team accuracy %), Table 3.
    """

    name: str
    table2: dict[str, float]
    table3: dict[str, tuple[float | None, float]]


#: named presets (``xcorr team --reference``); ImageNet-ReaL's thresholds are not in the paper's text
REFERENCES: dict[str, Reference] = {
    "cub": Reference(name="cub", table2=PAPER_TABLE2_CUB, table3=PAPER_TABLE3_CUB),  # type: ignore[arg-type]
    "imagenet-real": Reference(name="imagenet-real",
                               table2={"ResNet-50": 81.56, "kNN": 75.76, "EMD-NN": 77.72, "EMD-Corr": 78.87, "CHM-NN": 77.56,
                                       "CHM-Corr": 77.23},
                               table3={"ResNet-50": (None, 88.63), "kNN": (None, 87.24), "EMD-Corr": (None, 88.02),
                                       "CHM-Corr": (None, 87.89)}),
}


def _reference(name: str | None) -> Reference | None:
    if name is None or name == "none":
        return None
    if name not in REFERENCES:
        raise InputError(f"unknown reference {name!r}; presets: {', '.join(REFERENCES)} (or none)")
    return REFERENCES[name]


class TeamArm(BaseModel):
    """Model-2 results of one arm."""

    arm: str
    ai_method: str
    ai_accuracy: float
    human_accuracy: float
    paper_threshold: float | None
    paper_threshold_accuracy: float | None
    paper_team_accuracy: float | None = None  # the reference's Table 3 team accuracy (%)
    fixed_threshold: float | None = None  # a threshold the user gave for this AI method
    fixed_threshold_accuracy: float | None = None  # team accuracy there (all AI items, all users)
    authors_split: ThresholdChoice
    cross_validated: ThresholdChoice
    complementarity: Complementarity
    curve: list[dict[str, float]]


class TeamReport(BaseModel):
    """Both interaction models for one study."""

    trials_file: str
    users_kept: int
    users_dropped: int
    min_accuracy: float | None
    reference: str | None = None  # the preset whose published figures are shown beside ours
    arms: list[ArmSummary]
    pairwise: list[PairwiseTest]
    team: list[TeamArm]


def analyse(table: TrialTable, ai: dict[str, AIPredictions], *, arm_of_method: dict[str, str] | None = None,
            min_accuracy: float | None = 0.5, method: MWMethod = "auto", correction: Correction = "holm",
            n_boot: int = 2000, seed: int = 0, reference: str | None = None, exclude: list[str] | None = None,
            thresholds: dict[str, float] | None = None, n_pick: int | None = None, n_report: int | None = None) -> TeamReport:
    """Filter users, summarise model 1 per arm with pairwise tests, and model 2 per AI method.

    ``reference``: a preset of `REFERENCES` (``"cub"``, ``"imagenet-real"``) whose published figures
    are reported beside ours; None shows none (another study's data is never compared to CUB's).
    ``exclude``: user ids dropped before anything else; ``thresholds``: AI method -> a fixed T
    reported beside the chosen ones; ``n_pick`` / ``n_report``: the split sizes of the authors'
    threshold search (default: theirs, 1,000 / 4,000, scaled down for smaller sets)."""
    ref = _reference(reference)
    kept = table.filter_users(min_accuracy, exclude=exclude)
    mapping = arm_of_method or {m: a for m, a in CUB_AI_METHODS.items() if m in ai}
    unknown_m = sorted(set(mapping) - set(ai))
    unknown_a = sorted(set(mapping.values()) - set(kept.arms))
    if unknown_m or unknown_a:
        raise InputError(f"the arm map names AI method(s) {unknown_m} not in the predictions (found: {', '.join(ai)}) "
                         f"or arm(s) {unknown_a} not in the trials (found: {', '.join(kept.arms)})")
    bad_t = {m: t for m, t in (thresholds or {}).items() if m not in mapping or not 0.0 <= t <= 1.0}
    if bad_t:
        raise InputError(f"thresholds {bad_t}: each must name a mapped AI method ({', '.join(mapping)}) and lie in [0, 1]")
    arms = [a for a in kept.arms]
    from .data import CUB_ARMS

    arms = [a for a in CUB_ARMS if a in arms] + [a for a in arms if a not in CUB_ARMS]
    team = []
    for m, arm in mapping.items():
        h = human_trials(kept, arm)
        paper = ref.table3.get(arm) if ref is not None else None
        cv = cv_threshold(ai[m], h, seed=seed)
        # a last threshold above every confidence: everything to humans (the human-alone end)
        curve = team_curve(ai[m], h, np.append(np.round(np.arange(0, 1.0001, 0.01), 10), 1.0 + 1e-9))
        team.append(TeamArm(
            arm=arm, ai_method=m, ai_accuracy=ai[m].accuracy, human_accuracy=h.accuracy,
            paper_threshold=paper[0] if paper else None,
            paper_threshold_accuracy=team_curve(ai[m], h, np.array([paper[0]]))[0].team_accuracy if paper and paper[0] is not None else None,
            paper_team_accuracy=paper[1] if paper else None,
            fixed_threshold=(thresholds or {}).get(m),
            fixed_threshold_accuracy=team_curve(ai[m], h, np.array([thresholds[m]]))[0].team_accuracy if thresholds and m in thresholds else None,
            authors_split=_authors_split(ai[m], h, n_pick, n_report), cross_validated=cv,
            complementarity=complementarity(ai[m], h, cv.threshold, n_boot=n_boot, seed=seed),
            curve=[{"threshold": p.threshold, "coverage": p.coverage, "team_accuracy": p.team_accuracy} for p in curve],
        ))
    return TeamReport(trials_file=table.source, users_kept=len(kept.users), users_dropped=len(table.users) - len(kept.users),
                      min_accuracy=min_accuracy, reference=reference if ref is not None else None, arms=summarize_arms(kept, arms),
                      pairwise=pairwise_tests(kept, arms, method=method, correction=correction, seed=seed), team=team)


def _authors_split(ai: AIPredictions, h: Any, n_pick: int | None = None, n_report: int | None = None) -> ThresholdChoice:
    """The authors' 1k / 4k split, scaled down (1/5 to pick, the rest to report) for smaller sets."""
    n = ai.correct.size
    n_pick = n_pick if n_pick is not None else min(1000, max(1, n // 5))
    n_report = n_report if n_report is not None else min(4000, n - n_pick)
    return authors_threshold(ai, h, n_pick=n_pick, n_report=n_report)


def format_report(r: TeamReport) -> str:
    """Plain-text tables (what ``xcorr team`` prints)."""
    pct = lambda v: "  n/a" if v is None or v != v else f"{100 * v:5.2f}"  # noqa: E731
    lines = [f"{r.trials_file}: {r.users_kept} users kept, {r.users_dropped} dropped (accuracy <= {r.min_accuracy})", "",
             "Interaction model 1 — humans decide every input (per-user accuracy, %)",
             f"{'arm':<10} {'users':>5} {'mean':>6} {'sd':>6} {'paper':>6} {'AI right':>9} {'AI wrong':>9} {'reject':>7}"]
    ref = _reference(r.reference)
    for a in r.arms:
        paper = ref.table2.get(a.arm) if ref is not None else None
        lines.append(f"{a.arm:<10} {a.users:>5} {pct(a.accuracy_mean):>6} {pct(a.accuracy_sd):>6} "
                     f"{(f'{paper:5.2f}' if paper is not None else '  -  '):>6} {pct(a.accuracy_when_ai_right):>9} "
                     f"{pct(a.accuracy_when_ai_wrong):>9} {pct(a.reject_rate):>7}")
    if r.pairwise:
        used = sorted({t.method for t in r.pairwise})
        how = {"exact": "exact", "asymptotic": "normal approximation, tie-corrected", "permutation": "permutation"}
        lines += ["", f"Mann-Whitney U on per-user accuracy ({' / '.join(how.get(m, m) for m in used)}; "
                      f"{r.pairwise[0].correction} correction)"]
        for t in r.pairwise:
            star = "*" if t.p_adjusted < 0.05 else " "
            tag = f"  [{t.method}]" if len(used) > 1 else ""
            lines.append(f"  {t.arm_a:>9} vs {t.arm_b:<9} diff {100 * t.mean_difference:+6.2f}  p {t.p:.4f}  adjusted {t.p_adjusted:.4f} {star}{tag}")
    lines += ["", "Interaction model 2 — AI auto-accepts when confidence >= T, humans take the rest (%)",
              f"{'arm':<10} {'AI':>6} {'human':>6} {'paper T':>8} {'paper':>6} {'team@T':>7} {'split T':>8} {'held-out':>8} "
              f"{'CV T':>5} {'CV acc':>7} {'margin':>7} {'95% CI':>15} {'p':>7}"]
    for t in r.team:
        c = t.complementarity
        lines.append(f"{t.arm:<10} {pct(t.ai_accuracy):>6} {pct(t.human_accuracy):>6} "
                     f"{(f'{t.paper_threshold:.2f}' if t.paper_threshold is not None else '-'):>8} "
                     f"{(f'{t.paper_team_accuracy:5.2f}' if t.paper_team_accuracy is not None else '  -  '):>6} {pct(t.paper_threshold_accuracy):>7} "
                     f"{t.authors_split.threshold:>8.2f} {pct(t.authors_split.reported_accuracy):>8} {t.cross_validated.threshold:>5.2f} "
                     f"{pct(t.cross_validated.reported_accuracy):>7} {100 * c.margin:>+7.2f} "
                     f"[{100 * c.ci[0]:+5.2f}, {100 * c.ci[1]:+5.2f}] {c.p_value:>7.4f}")
    fixed = [t for t in r.team if t.fixed_threshold is not None]
    if fixed:
        lines.append("fixed thresholds: " + ", ".join(f"{t.ai_method} T={t.fixed_threshold:g}: team {pct(t.fixed_threshold_accuracy)}" for t in fixed))
    lines.append("margin = team (at the CV threshold) - max(AI alone, humans alone); p: one-sided bootstrap test of margin <= 0")
    lines.append(f"paper columns: the {r.reference!r} reference" if r.reference else "paper columns: none (pass a reference preset to compare)")
    return "\n".join(lines)


def plot_team_curves(r: TeamReport) -> Any:
    """Team accuracy against coverage (fraction auto-accepted) per arm, with the AI-alone and
    human-alone ends, the paper's threshold and the CV threshold marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from xcorr_core.viz import PAIR_COLORS

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for i, t in enumerate(r.team):
        col = PAIR_COLORS[i % len(PAIR_COLORS)]
        pts = [p for p in t.curve if p["team_accuracy"] == p["team_accuracy"]]
        ax.plot([p["coverage"] for p in pts], [100 * p["team_accuracy"] for p in pts], color=col, label=f"{t.arm} (AI {100 * t.ai_accuracy:.1f}%)")
        for thr, marker in ((t.paper_threshold, "o"), (t.cross_validated.threshold, "*")):
            if thr is None:
                continue
            p = min(t.curve, key=lambda q: abs(q["threshold"] - thr))
            ax.scatter([p["coverage"]], [100 * p["team_accuracy"]], color=col, marker=marker, s=60 if marker == "*" else 30, zorder=3)
    ax.set_xlabel("coverage: fraction of inputs auto-accepted from the AI")
    ax.set_ylabel("team accuracy (%)")
    ax.set_title("Human-AI team (interaction model 2): " + ("o paper's T, " if r.reference else "") + "* cross-validated T", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower center")
    lo = min(100 * min(t.human_accuracy for t in r.team), 60) if r.team else 60
    top = max([100 * p["team_accuracy"] for t in r.team for p in t.curve if p["team_accuracy"] == p["team_accuracy"]]
              + [100 * t.ai_accuracy for t in r.team] + [88.0])
    ax.set_ylim(lo - 2, min(100.5, top + 2))  # never clip a curve
    fig.tight_layout()
    return fig
