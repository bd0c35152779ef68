"""``xcorr team``: both interaction models on a study's CSVs (default: the bundled CUB study)."""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from xcorr_core.fileio import atomic_write


def add_command(subparsers: Any) -> None:
    p = subparsers.add_parser("team", help="human-AI team accuracy from human-study data (interaction models 1 and 2)",
                              description="Reproduce and extend the human-AI team analysis of a study. Without --trials/--ai "
                                          "the bundled CUB study of the EMD/CHM-Corr paper is used.")
    p.add_argument("--trials", help="per-trial CSV (default: the bundled CUB study)")
    p.add_argument("--ai", help="AI-only predictions CSV with <method>_correct and <method>_conf columns")
    p.add_argument("--arm-map", help="AI method=study arm pairs, e.g. 'resnet=ResNet-50,knn=kNN' (default: the CUB study's)")
    p.add_argument("--columns", help="JSON object mapping fields (user, query, arm, ai_correct, confidence, user_correct) to CSV columns")
    p.add_argument("--min-accuracy", type=float, default=0.5, help="drop users at or below this accuracy (default 0.5, as the authors)")
    p.add_argument("--test", choices=["exact", "asymptotic", "permutation"], default="exact", help="Mann-Whitney method")
    p.add_argument("--correction", choices=["none", "bonferroni", "holm", "bh"], default="holm")
    p.add_argument("--boot", type=int, default=2000, help="bootstrap replicates")
    p.add_argument("--out", default="team-out", help="folder for team.json and team_curves.png")
    p.add_argument("--reference", choices=["cub", "imagenet-real", "none"], default=None,
                   help="published figures to show beside ours (default: cub for the bundled study, none for your own data)")
    p.add_argument("--json", action="store_true", help="print the JSON report instead of tables")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from xcorr_core.viz import save_figure

    from .data import ColumnMap, bundled_paths, load_ai_predictions, load_trials
    from .report import analyse, format_report, plot_team_curves

    trials_path, ai_path = bundled_paths()
    cols = ColumnMap(**json.loads(args.columns)) if args.columns else None
    table = load_trials(args.trials or trials_path, cols)
    ai = load_ai_predictions(args.ai or ai_path)
    mapping = None
    if args.arm_map:
        mapping = dict(pair.split("=", 1) for pair in args.arm_map.split(","))
    reference = args.reference or ("cub" if not args.trials else "none")
    report = analyse(table, ai, arm_of_method=mapping, min_accuracy=args.min_accuracy, method=args.test,
                     correction=args.correction, n_boot=args.boot, reference=None if reference == "none" else reference)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / "team.json", lambda f: f.write(report.model_dump_json(indent=2).encode()))
    if report.team:
        save_figure(plot_team_curves(report), out / "team_curves.png")
    print(report.model_dump_json(indent=2) if args.json else format_report(report))
    if not args.json:
        print(f"\nwrote {out / 'team.json'}" + (f" and {out / 'team_curves.png'}" if report.team else ""))
    return 0
