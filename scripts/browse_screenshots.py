"""Screenshots of the browser site for docs/browse.md, from a job folder and its site.

    python scripts/browse_screenshots.py JOB SITE [DOCS_IMG_DIR]

Writes browse-table.png (the table filtered to EMD-Corr's wrong decisions), browse-detail.png
(one query's neighbours with EMD-Corr's patch pairs) and browse-summary.png into docs/img.
Uses the system's Chromium through Playwright (xcorr_core.testing.browser).
"""
from __future__ import annotations

import sys
from pathlib import Path

from xcorr_core.jobs import read_results
from xcorr_core.testing.browser import chromium


def main() -> None:
    job, site = Path(sys.argv[1]), Path(sys.argv[2])
    out = Path(sys.argv[3]) if len(sys.argv) > 3 else Path(__file__).resolve().parents[1] / "docs" / "img"
    t = read_results(job).to_pydict()
    wrong = [q for q, p, y in zip(t["query_id"], t["emd_corr_prediction"], t["label"]) if p != y]
    url = (site / "index.html").resolve().as_uri()
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1280, "height": 720})
        for name, h, wait in [("browse-table", "wrong=emd_corr", "body[data-loaded='1']"),
                              ("browse-detail", f"wrong=emd_corr&query={wrong[0]}", f"body[data-detail='{wrong[0]}']"),
                              ("browse-summary", "view=summary", "body[data-loaded='1']")]:
            page.goto(f"{url}#{h}")
            page.reload()  # a hash-only change does not reload the page
            page.wait_for_selector(wait)
            page.wait_for_timeout(400)  # pictures
            page.screenshot(path=str(out / f"{name}.png"))
            print(out / f"{name}.png")


if __name__ == "__main__":
    main()
