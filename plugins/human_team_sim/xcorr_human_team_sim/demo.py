"""The plugin's section of ``xcorr demo``: the bundled CUB study, both interaction models,
and a sample-size plan for EMD-Corr vs kNN."""
from __future__ import annotations

import html
from typing import Any

from xcorr_core.demo import DemoSection

from .loading import bundled_paths, load_ai_predictions, load_trials
from .report import analyse, format_report, plot_team_curves
from .simulate import assumptions_from_study, users_needed


def team_section(ctx: Any) -> DemoSection:
    trials, ai = bundled_paths()
    table = load_trials(trials)
    report = analyse(table, load_ai_predictions(ai), n_boot=1000, reference="cub")
    rel = ctx.save_figure(plot_team_curves(report), "team_curves")
    kept = table.filter_users(0.5)
    a, b = assumptions_from_study(kept, "EMD-Corr"), assumptions_from_study(kept, "kNN")
    need, curve = users_needed(a, b, sims=500)
    plan = {"arm_a": a.model_dump(), "arm_b": b.model_dump(), "users_for_80_percent_power": need,
            "curve": [{"users": r.users_per_arm, "power": r.power} for r in curve]}
    body = ("<p>The CUB human study of the EMD/CHM-Corr paper (bundled, MIT-licensed by its authors): 30 trials per user; "
            "users with accuracy &le; 50 % dropped as in the authors' analysis. Model 1: humans decide everything. "
            "Model 2: the AI's decision is auto-accepted when its confidence &ge; T.</p>"
            f"<pre>{html.escape(format_report(report))}</pre>"
            f"<p>Study design: with the rates estimated from this study, a new EMD-Corr vs kNN study of 30 trials per user "
            f"needs <b>{need if need is not None else 'more than 400'}</b> users per arm for 80 % power (two-sided Mann-Whitney, "
            f"alpha 0.05): " + ", ".join(f"{r.users_per_arm}: {r.power:.0%}" for r in curve) + ".</p>")
    return DemoSection(title="Human-AI teams (CUB study)", report={"team": report.model_dump(), "study_design": plan},
                       figures=[rel], html=body)
