"""``xcorr team``: both interaction models on a study's CSVs (default: the bundled CUB study)."""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from xcorr_core.fileio import atomic_write, make_dir


def add_command(subparsers: Any) -> None:
    p = subparsers.add_parser("team", help="human-AI team accuracy from human-study data (interaction models 1 and 2)",
                              description="Reproduce and extend the human-AI team analysis of a study. Without --trials/--ai "
                                          "the bundled CUB study of the EMD/CHM-Corr paper is used.")
    p.add_argument("--trials", help="per-trial CSV (default: the bundled CUB study)")
    p.add_argument("--ai", help="AI-only predictions CSV with <method>_correct and <method>_conf columns")
    p.add_argument("--arm-map", help="AI method=study arm pairs, e.g. 'resnet=ResNet-50,knn=kNN' (default: the CUB study's)")
    p.add_argument("--columns", help="JSON object mapping fields (user, query, arm, ai_correct, confidence, user_correct) to CSV columns")
    p.add_argument("--min-accuracy", type=float, default=0.5, help="drop users at or below this accuracy (default 0.5, as the authors)")
    p.add_argument("--exclude", help="user ids to drop, comma-separated (ints or strings, as in the user column)")
    p.add_argument("--threshold", help="fixed thresholds per AI method to report, e.g. 'resnet=0.45,knn=0.45'")
    p.add_argument("--n-pick", type=int, help="AI items the authors' split search picks T on (default 1000, scaled down for small sets)")
    p.add_argument("--n-report", type=int, help="AI items it reports on (default 4000, or what is left)")
    p.add_argument("--test", choices=["auto", "exact", "asymptotic", "permutation"], default="auto",
                   help="Mann-Whitney method (default auto: exact without ties on small samples, else normal approximation "
                        "with tie correction; the report names the method each p came from)")
    p.add_argument("--correction", choices=["none", "bonferroni", "holm", "bh"], default="holm")
    p.add_argument("--boot", type=int, default=2000, help="bootstrap replicates")
    p.add_argument("--out", default="team-out", help="folder for team.json and team_curves.png")
    p.add_argument("--reference", choices=["cub", "imagenet-real", "none"], default=None,
                   help="published figures to show beside ours (default: cub for the bundled study, none for your own data)")
    p.add_argument("--json", action="store_true", help="print the JSON report instead of tables")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from xcorr_core.viz import save_figure

    from .data import ColumnMap
    from .loading import bundled_paths, load_ai_predictions, load_trials
    from .report import analyse, format_report, plot_team_curves

    trials_path, ai_path = bundled_paths()
    cols = _columns(args.columns) if args.columns else None
    table = load_trials(args.trials or trials_path, cols)
    ai = load_ai_predictions(args.ai or ai_path)
    mapping = _pairs(args.arm_map, "--arm-map", "method=arm") if args.arm_map else None
    fixed = {m: _float(t, "--threshold") for m, t in _pairs(args.threshold, "--threshold", "method=T").items()} if args.threshold else None
    exclude = [u.strip() for u in args.exclude.split(",") if u.strip()] if args.exclude else None
    reference = args.reference or ("cub" if not args.trials else "none")
    report = analyse(table, ai, arm_of_method=mapping, min_accuracy=args.min_accuracy, method=args.test,
                     correction=args.correction, n_boot=args.boot, reference=None if reference == "none" else reference,
                     exclude=exclude, thresholds=fixed, n_pick=args.n_pick, n_report=args.n_report)
    out = make_dir(args.out)
    atomic_write(out / "team.json", lambda f: f.write(report.model_dump_json(indent=2).encode()))
    if report.team:
        save_figure(plot_team_curves(report), out / "team_curves.png")
    print(report.model_dump_json(indent=2) if args.json else format_report(report))
    if not args.json:
        print(f"\nwrote {out / 'team.json'}" + (f" and {out / 'team_curves.png'}" if report.team else ""))
    return 0


def _columns(text: str) -> Any:
    from pydantic import ValidationError

    from xcorr_core.errors import InputError

    from .data import ColumnMap

    try:
        return ColumnMap(**json.loads(text))
    except json.JSONDecodeError as exc:
        raise InputError(f"--columns is not JSON ({exc.msg} at character {exc.pos}): give e.g. '{{\"user\": \"worker\"}}'") from None
    except (TypeError, ValidationError) as exc:
        fields = ", ".join(ColumnMap.model_fields)
        raise InputError(f"--columns must map some of the fields {fields} to column names: {str(exc).splitlines()[0]}") from None


def _pairs(text: str, flag: str, form: str) -> dict[str, str]:
    from xcorr_core.errors import InputError

    out: dict[str, str] = {}
    for part in text.split(","):
        key, sep, value = part.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise InputError(f"{flag}: {part!r} is not {form}; give comma-separated {form} pairs")
        out[key.strip()] = value.strip()
    return out


def _float(text: str, flag: str) -> float:
    from xcorr_core.errors import InputError

    try:
        return float(text)
    except ValueError:
        raise InputError(f"{flag}: {text!r} is not a number") from None
