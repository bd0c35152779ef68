"""`xcorr team` on large studies (issue 27): time and peak memory at 10k, 100k and 1M trials.

    python benchmarks/bench_team.py [ROWS ...]   (default: 10000 100000 1000000)

Each study is the bundled CUB study (30 trials per user, 22 columns) with its users repeated
under new ids until it has ROWS trials. Each size runs `xcorr team --json` in a child process
(wall seconds, peak RSS from VmHWM) with the CLI's defaults (2,000 bootstrap replicates,
Mann-Whitney `auto`). The baseline in the same child is the loader this replaced: one
pydantic `TrialRow` per CSV row; its ratio is the load-time speed-up. Prints one JSON line per size.
"""
from __future__ import annotations

import gzip
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD = r"""
import csv, json, sys, time, io, contextlib
from xcorr_core.cli import main
from xcorr_human_team_sim.data import TrialRow, TrialTable, ColumnMap, load_trials
path, out = sys.argv[1], sys.argv[2]
t0 = time.perf_counter()
table = load_trials(path)
load_s = time.perf_counter() - t0
base_s = None
if len(table) <= 200_000:  # the per-row baseline: 1M pydantic rows take minutes and GBs
    t0 = time.perf_counter()
    cols = ColumnMap().model_dump()
    with open(path, newline="") as f:
        rows = [TrialRow(**{k: rec[c] for k, c in cols.items()}) for rec in csv.DictReader(f)]
    TrialTable(rows)
    base_s = time.perf_counter() - t0
    del rows
del table
t0 = time.perf_counter()
with contextlib.redirect_stdout(io.StringIO()) as buf:
    rc = main(["team", "--trials", path, "--out", out, "--json"])
team_s = time.perf_counter() - t0
report = json.loads(buf.getvalue())
hwm = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM"))
ps = [t["p"] for t in report["pairwise"]]
print(json.dumps({"load_s": load_s, "baseline_load_s": base_s, "team_s": team_s, "peak_rss_mb": hwm / 1024,
                  "users_kept": report["users_kept"], "methods": sorted({t["method"] for t in report["pairwise"]}),
                  "p_finite": all(p == p for p in ps), "min_p": min(ps)}))
"""


def write_study(rows: int, path: Path) -> int:
    """The bundled study's rows, users repeated as ``<uid>~<copy>``, up to ``rows`` trials (whole users)."""
    from xcorr_human_team_sim import bundled_paths

    with gzip.open(bundled_paths()[0], "rt", newline="") as f:
        header, *body = f.read().splitlines()
    written = 0
    with open(path, "w", newline="") as out:
        out.write(header + "\n")
        copy = 0
        while written < rows:
            for line in body:
                uid, rest = line.split(",", 1)
                out.write(f"{uid}~{copy},{rest}\n")
            written += len(body)
            copy += 1
    return written


def main() -> None:
    sizes = [int(a) for a in sys.argv[1:]] or [10_000, 100_000, 1_000_000]
    with tempfile.TemporaryDirectory() as tmp:
        for rows in sizes:
            path = Path(tmp) / f"study-{rows}.csv"
            n = write_study(rows, path)
            t0 = time.perf_counter()
            res = subprocess.run([sys.executable, "-c", CHILD, str(path), str(Path(tmp) / "out")], capture_output=True, text=True)
            if res.returncode:
                raise SystemExit(res.stderr[-2000:])
            r = json.loads(res.stdout.strip().splitlines()[-1])
            r.update(rows=n, users_per_arm=round(r["users_kept"] / 6), file_mb=round(path.stat().st_size / 1e6, 1),
                     child_s=round(time.perf_counter() - t0, 1))
            if r["baseline_load_s"]:
                r["load_speedup"] = round(r["baseline_load_s"] / r["load_s"], 2)
            print(json.dumps(r), flush=True)
            path.unlink()


if __name__ == "__main__":
    main()
