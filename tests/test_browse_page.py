"""The browser site in a real headless Chromium (Debian's, driven by Playwright's Python client):
it loads without console errors, lists every row, each documented hash form lists exactly the
right rows, a query's detail draws its correspondences, keyboard navigation, sorting, tags, the CSV
export and the summary's links.

These tests never skip: without Chromium they fail with the install command (`make test` installs
it when it runs as root)."""
from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from xcorr_core.jobs import read_results
from xcorr_core.testing.browser import chromium

METHODS = ("knn", "test_patchmax")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    try:
        manager = chromium()
        b = manager.__enter__()
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)
    yield b
    manager.__exit__(None, None, None)


@pytest.fixture(scope="module")
def table(browse_job) -> dict[str, list]:
    return read_results(browse_job[0]).to_pydict()


def _open(browser: Any, site: Path, hash_: str = "", height: int = 900) -> tuple[Any, list[str]]:
    """A fresh context (own local storage), the page loaded to its last data file; and the list its
    console errors go into."""
    ctx = browser.new_context(viewport={"width": 1400, "height": height}, accept_downloads=True)
    page = ctx.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto((site / "index.html").as_uri() + (f"#{hash_}" if hash_ else ""))
    page.wait_for_selector("body[data-loaded='1']", timeout=20000)
    return page, errors


def _listed(page: Any) -> list[int]:
    """Every row the table lists, in order, read from the DOM while scrolling the virtual table."""
    return page.evaluate("""async () => {
        const vp = document.querySelector('#viewport'), seen = [], have = new Set();
        vp.scrollTop = 0;
        for (;;) {
            await new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)));
            const rows = Array.from(document.querySelectorAll('#rows .row')).sort((a, b) => a.offsetTop - b.offsetTop);
            for (const r of rows) { const id = Number(r.dataset.id); if (!have.has(id)) { have.add(id); seen.push(id); } }
            if (vp.scrollTop + vp.clientHeight >= vp.scrollHeight - 1) break;
            vp.scrollTop += vp.clientHeight;
        }
        return seen;
    }""")


def _count(n: int) -> str:
    return f"{n} {'query' if n == 1 else 'queries'}"


def _right(t: dict[str, list], m: str) -> list[bool]:
    return [p == y for p, y in zip(t[f"{m}_prediction"], t["label"])]


def test_the_page_loads_without_console_errors_and_lists_every_row(browser: Any, browse_job, table) -> None:
    page, errors = _open(browser, browse_job[1], height=600)  # a viewport smaller than the table: rows come and go
    assert page.inner_text("#count") == _count(len(table["query_id"])) == "48 queries"
    assert page.evaluate("document.querySelectorAll('#rows .row').length") < 48  # virtual: only what is in view
    assert _listed(page) == table["query_id"]
    assert errors == []


def _hash_cases(t: dict[str, list]) -> dict[str, list[int]]:
    ids, right = t["query_id"], {m: _right(t, m) for m in METHODS}
    conf = t["knn_confidence"]
    return {
        "wrong=knn": [i for i, r in zip(ids, right["knn"]) if not r],
        "wrong=test_patchmax": [i for i, r in zip(ids, right["test_patchmax"]) if not r],
        "right=test_patchmax": [i for i, r in zip(ids, right["test_patchmax"]) if r],
        "fixed=test_patchmax": [i for i, a, b in zip(ids, right["test_patchmax"], right["knn"]) if a and not b],
        "broke=test_patchmax": [i for i, a, b in zip(ids, right["test_patchmax"], right["knn"]) if b and not a],
        "class=3": [i for i, y in zip(ids, t["label"]) if y == 3],
        "disagree=knn,test_patchmax": [i for i, a, b in zip(ids, t["knn_prediction"], t["test_patchmax_prediction"]) if a != b],
        "conf=knn:0.5:0.9": [i for i, c in zip(ids, conf) if 0.5 <= c <= 0.9],
        "wrong=knn&class=1": [i for i, r, y in zip(ids, right["knn"], t["label"]) if not r and y == 1],
        "query=5": ids,
    }


def test_each_hash_form_lists_exactly_the_right_rows(browser: Any, browse_job, table) -> None:
    cases = _hash_cases(table)
    assert cases["wrong=knn"] and cases["wrong=test_patchmax"] and cases["conf=knn:0.5:0.9"], "the small job should make mistakes"
    for h, want in cases.items():
        page, errors = _open(browser, browse_job[1], h)
        assert page.inner_text("#count") == _count(len(want)), h
        assert _listed(page) == want, h
        assert errors == [], h
        page.context.close()


def test_a_query_opens_and_draws_its_correspondences(browser: Any, browse_job, table) -> None:
    qid = 5
    r = table["query_id"].index(qid)
    page, errors = _open(browser, browse_job[1], f"query={qid}")
    page.wait_for_selector(f"body[data-detail='{qid}']")
    assert page.is_visible("#detail") and f"query {qid}" in page.inner_text("#detail h2")
    k = len(table["test_patchmax_ids"][r])
    cards = page.query_selector_all("#detail .card")
    assert [int(c.get_attribute("data-neighbour")) for c in cards] == table["test_patchmax_ids"][r]
    lines = page.query_selector_all("#detail svg line.match")
    assert len(lines) == k * 5
    # the first neighbour's first pair, drawn from the query cell's centre to the neighbour cell's (7 x 7 grid, 150 px images)
    a, b = table["test_patchmax_pairs"][r][0][0]
    x1, y1, x2, y2 = (float(lines[0].get_attribute(n)) for n in ("x1", "y1", "x2", "y2"))
    cell = 150 / 7
    assert (x1, y1) == pytest.approx(((a % 7 + 0.5) * cell, (a // 7 + 0.5) * cell))
    assert (x2, y2) == pytest.approx((166 + (b % 7 + 0.5) * cell, (b // 7 + 0.5) * cell))
    page.click("#detail .methods button[data-method='knn']")
    page.wait_for_function("document.querySelectorAll('#detail .card').length > 0 && !document.querySelector('#detail svg line')")
    assert [int(c.get_attribute("data-neighbour")) for c in page.query_selector_all("#detail .card")] == table["knn_ids"][r]
    page.keyboard.press("ArrowRight")
    page.wait_for_selector(f"body[data-detail='{table['query_id'][r + 1]}']")
    assert page.evaluate("location.hash") == f"#query={table['query_id'][r + 1]}"
    page.keyboard.press("k")
    page.wait_for_selector(f"body[data-detail='{qid}']")
    page.keyboard.press("Escape")
    assert page.is_hidden("#detail") and page.evaluate("location.hash") == ""
    assert errors == []


def _download(page: Any, button: str) -> list[dict[str, str]]:
    with page.expect_download() as d:
        page.click(button)
    return list(csv.DictReader(io.StringIO(Path(d.value.path()).read_text())))


def test_the_csv_export_matches_the_filter(browser: Any, browse_job, table) -> None:
    want = _hash_cases(table)["wrong=knn"]
    page, _ = _open(browser, browse_job[1], "wrong=knn")
    rows = _download(page, "#b-csv")
    assert [int(r["query_id"]) for r in rows] == want
    assert all(r["knn_correct"] == "0" for r in rows)
    r0 = table["query_id"].index(want[0])
    assert int(rows[0]["knn_prediction"]) == table["knn_prediction"][r0] and int(rows[0]["label"]) == table["label"][r0]


def test_tags_filter_and_export(browser: Any, browse_job, table) -> None:
    page, errors = _open(browser, browse_job[1])
    page.click("#rows .row[data-id='7'] .star")
    page.click("#rows .row[data-id='2'] .star")
    page.check("#f-tagged")
    assert page.evaluate("location.hash") == "#tagged=1"
    assert page.inner_text("#count") == "2 queries" and _listed(page) == [2, 7]
    rows = _download(page, "#b-csv-tagged")
    assert [int(r["query_id"]) for r in rows] == [2, 7] and {r["tagged"] for r in rows} == {"1"}
    page.reload()  # tags are kept in the browser's local storage
    page.wait_for_selector("body[data-loaded='1']")
    assert _listed(page) == [2, 7]
    assert errors == []


def test_sorting_by_a_column(browser: Any, browse_job, table) -> None:
    page, _ = _open(browser, browse_job[1])
    page.click("#grid-head .cell[data-sort='knn_conf']")
    assert page.evaluate("location.hash") == "#sort=knn_conf"
    want = sorted(table["query_id"], key=lambda i: (table["knn_confidence"][table["query_id"].index(i)], i))
    assert _listed(page) == want
    page.click("#grid-head .cell[data-sort='knn_conf']")
    want_desc = sorted(table["query_id"], key=lambda i: (-table["knn_confidence"][table["query_id"].index(i)], i))
    assert page.evaluate("location.hash") == "#sort=-knn_conf" and _listed(page) == want_desc


def test_the_summary_shows_accuracy_and_links_to_the_fixes(browser: Any, browse_job, table) -> None:
    page, errors = _open(browser, browse_job[1], "view=summary")
    assert page.is_visible("#summary-view") and page.is_hidden("#table-view")
    text = page.inner_text("#summary-view")
    for m in METHODS:
        acc = sum(_right(table, m)) / len(table["label"])
        assert f"{100 * acc:.1f}%" in text
    cases = _hash_cases(table)
    fixes, breaks = cases["fixed=test_patchmax"], cases["broke=test_patchmax"]
    assert page.inner_text("#fixed-test_patchmax") == str(len(fixes)) and page.inner_text("#broke-test_patchmax") == str(len(breaks))
    assert fixes or breaks, "the small job's re-ranker should change some decisions"
    link, want, h = ("#fixed-test_patchmax", fixes, "#fixed=test_patchmax") if fixes else ("#broke-test_patchmax", breaks, "#broke=test_patchmax")
    page.click(link)
    page.wait_for_function("!document.querySelector('#table-view').hidden")
    assert page.evaluate("location.hash") == h
    assert page.inner_text("#count") == _count(len(want)) and _listed(page) == want
    assert errors == []
