"""The ``xcorr`` command: ``--version``, ``plugins [--json]``, ``demo [--out DIR]``,
``components``, ``run SPEC --out DIR`` (a job), ``index build`` / ``index eval`` (a gallery on
disk), ``browse OUT`` (a web site over a job's results), and sub-commands that plugins add through ``register_commands``.
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


def _job_spec(args: argparse.Namespace) -> "object":
    from .jobs import JobSpec
    from .sources import DataSource

    job = JobSpec.from_file(args.spec)
    updates: dict[str, object] = {}
    if getattr(args, "data", None):
        updates["data"] = DataSource.parse(args.data, "--data")
    if getattr(args, "gallery", None):
        updates["gallery"] = DataSource.parse(args.gallery, "--gallery")
    return job.model_copy(update=updates) if updates else job


def _cmd_run(args: argparse.Namespace) -> int:
    from .jobs import run_job

    rep = run_job(_job_spec(args), args.out, executor=args.executor, address=args.address, workers=args.workers, batch_size=args.batch_size,
                  resume=args.resume, gallery_dir=args.gallery_dir, progress=False if args.no_progress else None)
    print(f"{rep.done} of {rep.total} queries in {rep.out}/parts ({rep.errors} in errors/); this run: {rep.ran} queries, "
          f"{rep.seconds:.1f} s, {rep.queries_per_s:.2f} queries/s on {rep.executor} x{rep.workers}")
    for m, row in rep.summary.items():
        if isinstance(row, dict):
            print(f"  {m:<16} " + "  ".join(f"{k}={v:.4f}" for k, v in row.items() if isinstance(v, float)))
    return 0 if rep.errors == 0 else 3


def _cmd_index_build(args: argparse.Namespace) -> int:
    from .jobs import build_gallery
    from .jobs.executors import make_executor

    job = _job_spec(args)
    with make_executor(args.executor, address=args.address, workers=args.workers, num_gpus=job.num_gpus) as ex:  # type: ignore[attr-defined]
        info = build_gallery(job, args.out, ex, progress=False if args.no_progress else None, reuse=not args.force)  # type: ignore[arg-type]
    b = info["bytes"]
    print(f"gallery {info['source']}: {info['n']} items, {info['num_classes']} classes, index {info['index']['kind']} "
          f"({b['index'] / 1e6:.1f} MB), vectors {b['vectors'] / 1e6:.1f} MB, store {b['store'] / 1e6:.1f} MB -> {args.out}")
    return 0


def _cmd_index_eval(args: argparse.Namespace) -> int:
    from .errors import ConfigError
    from .jobs import eval_index

    def ints(text: str | None) -> list[int] | None:
        if not text:
            return None
        try:
            return [int(x) for x in text.split(",")]
        except ValueError:
            raise ConfigError(f"expected comma-separated integers such as 8,16,32, got {text!r}") from None

    rows = eval_index(args.gallery_dir, k=args.k, queries=args.queries, nprobe=ints(args.nprobe), ef_search=ints(args.ef_search),
                      refine=ints(args.refine))
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    for r in rows:
        setting = ", ".join(f"{k}={r[k]}" for k in ("nprobe", "refine", "ef_search") if k in r)
        print(f"{r['kind']:<9} {setting:<14} recall@{r['k']} = {r['recall']:.4f}   {r['ms_per_query']:.3f} ms/query "
              f"(exact {r['exact_ms_per_query']:.3f} ms, {r['exact_ms_per_query'] / max(r['ms_per_query'], 1e-9):.1f}x)")
    return 0


def _cmd_browse(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .browse import build_site, make_server

    site = Path(args.site) if args.site else Path(args.out) / "site"
    rep = build_site(args.out, site, chunk_rows=args.chunk_rows, pictures=not args.no_pictures, max_figures=args.max_figures,
                     progress=False if args.no_progress else None)
    print(f"{rep.queries} queries, methods {', '.join(rep.methods)}: {rep.chunks} data file(s), {rep.pictures} pictures, "
          f"{rep.figures} explanation figures in {rep.seconds:.1f} s")
    for p in rep.problems[:10]:
        print(f"  note: {p}")
    if len(rep.problems) > 10:
        print(f"  ... and {len(rep.problems) - 10} more notes")
    print(f"open {rep.index.resolve().as_uri()}")
    if args.serve is not None:
        server = make_server(site, args.serve)
        host, port = server.server_address[:2]
        print(f"serving {site} at http://{host}:{port}/ (Ctrl-C stops)", flush=True)
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            server.server_close()
    return 0


def _executor_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--executor", choices=["local", "ray"], default="local", help="local (default, no Ray) or ray")
    p.add_argument("--address", default=None, help="Ray cluster address (default: start a local Ray)")
    p.add_argument("--workers", type=int, default=2, help="Ray actors (default 2)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="xcorr", description="Explainability for image models that decide by comparing images.")
    parser.add_argument("--version", action="version", version=f"xcorr-core {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    p = sub.add_parser("plugins", help="list installed plugins, their components, and plugins that failed to load")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(handler=_cmd_plugins)
    p = sub.add_parser("components", help="list registered components")
    p.add_argument("--kind", choices=["explainer", "matcher", "reranker", "metric", "statistic"])
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=_cmd_components)
    p = sub.add_parser("demo", help="run the embedded default end to end and write a report")
    p.add_argument("--out", default="demo-out", help="output folder (default: demo-out)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.add_argument("--quick", action="store_true", help="small data sets (for smoke tests): every section still runs, and loading the shipped models and the "
                   "plugins' sections keeps it at a few minutes on a 2-core CPU; the numbers are not the reported ones")
    p.set_defaults(handler=_cmd_demo)
    p = sub.add_parser("run", help="run a job (pipeline over a whole data set) into a Parquet table")
    p.add_argument("spec", help="job file (or a pipeline spec file, with --data and --gallery)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--data", help="query data source, e.g. synthbirds:test, imagefolder:/path, cub:/path:test (overrides the job's)")
    p.add_argument("--gallery", help="gallery data source (overrides the job's)")
    p.add_argument("--gallery-dir", help="a gallery built by `xcorr index build` (default: OUT/gallery, built by the job)")
    p.add_argument("--batch-size", type=int, default=None, help="queries per batch (default: the job's)")
    p.add_argument("--resume", action="store_true", help="continue OUT: skip queries already finished")
    _executor_args(p)
    p.set_defaults(handler=_cmd_run)
    p = sub.add_parser("index", help="build a gallery on disk or measure its index")
    isub = p.add_subparsers(dest="index_command", metavar="ACTION", required=True)
    b = isub.add_parser("build", help="extract gallery features (as a job), write the sharded store and the index the spec names")
    b.add_argument("spec", help="job file (its pipeline and gallery) or pipeline spec with --gallery")
    b.add_argument("--out", required=True, help="gallery folder")
    b.add_argument("--gallery", help="gallery data source (overrides the job's)")
    b.add_argument("--force", action="store_true", help="rebuild even if OUT holds this gallery")
    _executor_args(b)
    b.set_defaults(handler=_cmd_index_build)
    e = isub.add_parser("eval", help="recall@k of a gallery's index against exact search")
    e.add_argument("gallery_dir")
    e.add_argument("-k", type=int, default=50)
    e.add_argument("--queries", type=int, default=1000, help="gallery vectors used as queries")
    e.add_argument("--nprobe", help="IVF settings to try, e.g. 8,16,32")
    e.add_argument("--ef-search", help="HNSW settings to try, e.g. 32,64,128")
    e.add_argument("--refine", help="IVF-PQ exact re-scoring factors to try, e.g. 1,2,4")
    e.add_argument("--json", action="store_true")
    e.set_defaults(handler=_cmd_index_eval)
    p = sub.add_parser("browse", help="write a web site over a job's results: table, detail views, summaries")
    p.add_argument("out", help="the job's output folder (what `xcorr run --out` wrote)")
    p.add_argument("--site", help="site folder (default: OUT/site); open its index.html from the file system")
    p.add_argument("--serve", type=int, metavar="PORT", help="then serve the site on http://127.0.0.1:PORT/ (0: any free port)")
    p.add_argument("--chunk-rows", type=int, default=2000, help="queries per data file (default 2000)")
    p.add_argument("--max-figures", type=int, default=200, help="draw explanation figures for at most this many queries (default 200)")
    p.add_argument("--no-pictures", action="store_true", help="no pictures of queries and neighbours (the job's data sources are not read)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.set_defaults(handler=_cmd_browse)
    for impl in registry.plugin_manager().hook.register_commands.get_hookimpls():
        try:
            impl.function(subparsers=sub)
        except Exception as exc:  # noqa: BLE001 - one plugin's bad command must not break the CLI
            print(f"xcorr: plugin {impl.plugin_name!r} failed to add its commands: {type(exc).__name__}: {exc}", file=sys.stderr)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line ``argv``; no process-wide side effects (callable from tests and other programs)."""
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


def console_main() -> None:
    """The ``xcorr`` executable: a whole process of batched work, so freed memory is kept for reuse
    (`allocator.retain_freed_memory`; ``XCORR_RETAIN_MEMORY=0`` opts out), then `main`."""
    from .allocator import retain_freed_memory

    retain_freed_memory()
    sys.exit(main())


if __name__ == "__main__":
    console_main()
