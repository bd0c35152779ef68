"""The ``xcorr`` command: ``--version``, ``plugins [--json]``, ``demo [--out DIR]``,
``components``, and sub-commands that plugins add through ``register_commands``.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from . import __version__, registry


def _cmd_plugins(args: argparse.Namespace) -> int:
    infos = registry.plugins()
    named = registry.models()
    if args.json:
        print(json.dumps([p.model_dump() | {"models": sorted(n for n, (pl, _, _) in named.items() if pl == p.name)} for p in infos], indent=2))
        return 0
    for p in infos:
        status = f"FAILED: {p.error}" if p.error else f"{len(p.components)} component(s)"
        print(f"{p.name} {p.version}  [{status}]")
        for c in p.components:
            print(f"    {c.kind:<9} {c.name:<24} {c.summary}")
        for n, (pl, _, summary) in sorted(named.items()):
            if pl == p.name:
                print(f"    {'model':<9} {n:<24} {summary}")
    return 0


def _cmd_components(args: argparse.Namespace) -> int:
    comps = registry.components(args.kind)
    if args.json:
        print(json.dumps([c.model_dump() for c in comps], indent=2))
    else:
        for c in comps:
            print(f"{c.kind:<9} {c.name:<24} ({c.plugin}) {c.summary}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    run_demo(args.out, progress=None if not args.no_progress else False, quick=args.quick)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="xcorr", description="Explainability for image models that decide by comparing images.")
    parser.add_argument("--version", action="version", version=f"xcorr-core {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    p = sub.add_parser("plugins", help="list installed plugins, their components, and plugins that failed to load")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(handler=_cmd_plugins)
    p = sub.add_parser("components", help="list registered components")
    p.add_argument("--kind", choices=["explainer", "matcher", "reranker", "metric"])
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=_cmd_components)
    p = sub.add_parser("demo", help="run the embedded default end to end and write a report")
    p.add_argument("--out", default="demo-out", help="output folder (default: demo-out)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.add_argument("--quick", action="store_true", help="small data sets (for smoke tests): every section still runs, and loading the shipped models and the "
                   "plugins' sections keeps it at a few minutes on a 2-core CPU; the numbers are not the reported ones")
    p.set_defaults(handler=_cmd_demo)
    for impl in registry.plugin_manager().hook.register_commands.get_hookimpls():
        try:
            impl.function(subparsers=sub)
        except Exception as exc:  # noqa: BLE001 - one plugin's bad command must not break the CLI
            print(f"xcorr: plugin {impl.plugin_name!r} failed to add its commands: {type(exc).__name__}: {exc}", file=sys.stderr)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "handler", None) is None:
        parser.print_help()
        return 0
    try:
        return int(args.handler(args) or 0)
    except (ValueError, LookupError, OSError) as exc:
        from .errors import XcorrError

        if isinstance(exc, XcorrError):
            print(f"xcorr: error: {exc}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
