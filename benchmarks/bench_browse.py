"""The browser site at 50,000 rows (issue 29), beside a naive page in the same run.

    python benchmarks/bench_browse.py [ROWS]   (default 50000)

A synthetic job (`xcorr_core.testing.jobs.synthetic_job`: kNN and one re-ranker, 200 classes,
k = 20 neighbours with 5 patch pairs each) is written, its site built with `build_site`, and both
pages are opened in headless Chromium (Debian's, through Playwright):

- site: time from navigation to the first screen of rows (the first data file rendered), to all
  data files loaded, to a jump to the middle of the table, to a filter (``#wrong=knn``) and to a
  query's detail view drawn (its detail data file read);
- naive: the same table columns as one HTML ``<table>`` of every row (``pandas.DataFrame.to_html``),
  the page a dashboard without chunks or virtual scrolling would write: time to its load event and
  to a jump to the middle.

Prints one JSON object; ``ratio`` is the naive page's load time over the site's first screen.
Times are medians of 3 fresh page loads.
"""
from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from xcorr_core.browse import build_site
from xcorr_core.testing.browser import chromium
from xcorr_core.testing.jobs import synthetic_job


def _site_times(browser, url: str) -> dict[str, float]:
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    t0 = time.perf_counter()
    page.goto(url, wait_until="commit")
    page.wait_for_selector("#rows .row", timeout=60000)
    first = time.perf_counter() - t0
    page.wait_for_selector("body[data-loaded='1']", timeout=120000)
    loaded = time.perf_counter() - t0
    t1 = time.perf_counter()
    page.evaluate("""() => new Promise((r) => { const vp = document.querySelector('#viewport');
        vp.scrollTop = vp.scrollHeight / 2; requestAnimationFrame(() => requestAnimationFrame(r)); })""")
    jump = time.perf_counter() - t1
    n = int(page.get_attribute("#count", "data-n"))
    t2 = time.perf_counter()
    page.evaluate("() => { location.hash = 'wrong=knn'; }")
    page.wait_for_function(f"document.querySelector('#count').dataset.n !== '{n}'", timeout=60000)
    filt = time.perf_counter() - t2
    qid = int(page.evaluate("document.querySelector('#rows .row').dataset.id"))
    t3 = time.perf_counter()
    page.evaluate(f"() => {{ location.hash = 'wrong=knn&query={qid}'; }}")
    page.wait_for_selector(f"body[data-detail='{qid}']", timeout=60000)
    detail = time.perf_counter() - t3
    page.close()
    return {"first_screen_s": first, "all_loaded_s": loaded, "jump_to_middle_s": jump, "filter_s": filt, "open_query_s": detail}


def _naive_times(browser, url: str) -> dict[str, float]:
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    t0 = time.perf_counter()
    page.goto(url, wait_until="load", timeout=300000)
    load = time.perf_counter() - t0
    t1 = time.perf_counter()
    page.evaluate("() => new Promise((r) => { window.scrollTo(0, document.body.scrollHeight / 2); requestAnimationFrame(() => requestAnimationFrame(r)); })")
    jump = time.perf_counter() - t1
    page.close()
    return {"load_s": load, "jump_to_middle_s": jump}


def main() -> None:
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 50_000
    import pandas as pd

    from xcorr_core.jobs import read_results

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        t = time.perf_counter()
        job = synthetic_job(tmp / "job", rows)
        t_job = time.perf_counter() - t
        rep = build_site(job, tmp / "site", progress=False)
        table = read_results(job)
        keep = [c for c in table.schema.names if not c.endswith(("_ids", "_scores", "_pairs", "_weights"))]
        naive = tmp / "naive.html"
        t = time.perf_counter()
        naive.write_text("<!doctype html><meta charset='utf-8'><title>naive</title>" + table.select(keep).to_pandas().to_html(index=False))
        t_naive = time.perf_counter() - t
        data = list((tmp / "site" / "data").iterdir())
        sizes = {kind: round(sum(f.stat().st_size for f in data if f.name.startswith(kind)) / 1e6, 1) for kind in ("rows", "detail")}
        naive_mb = round(naive.stat().st_size / 1e6, 1)
        with chromium() as browser:
            site = [_site_times(browser, rep.index.as_uri()) for _ in range(3)]
            base = [_naive_times(browser, naive.as_uri()) for _ in range(3)]
    med = lambda runs, k: round(statistics.median(r[k] for r in runs), 3)  # noqa: E731
    out = {
        "rows": rows, "synthetic_job_s": round(t_job, 1), "build_site_s": rep.seconds, "table_data_mb": sizes["rows"],
        "detail_data_mb": sizes["detail"], "data_files": rep.chunks, "naive_html_mb": naive_mb, "naive_write_s": round(t_naive, 1),
        "site": {k: med(site, k) for k in site[0]}, "naive": {k: med(base, k) for k in base[0]},
    }
    out["ratio"] = round(out["naive"]["load_s"] / out["site"]["first_screen_s"], 1)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
