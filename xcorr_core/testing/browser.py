"""A real headless Chromium for page tests: the system's browser (Debian's ``chromium``) driven by
Playwright's Python client, with no browser download. Used by the browser site's tests, its
benchmark and its screenshots. Depends on playwright (imported when a browser starts).
"""
from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["CHROMIUM_FLAGS", "INSTALL_HINT", "chromium_path", "chromium"]

#: flags for a root, offline, headless start (no sandbox for root; no calls home, which this kind of machine refuses)
CHROMIUM_FLAGS = ("--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage")

INSTALL_HINT = ("no Chromium found: install Debian's package (`sudo apt-get install chromium`, which `make test` does when it runs as "
                "root), or point XCORR_CHROMIUM at a Chromium or Chrome binary; Playwright's client comes with "
                "`pip install playwright` (no `playwright install` needed)")


def chromium_path() -> str | None:
    """The browser binary: ``$XCORR_CHROMIUM``, else the first of chromium, chromium-browser,
    google-chrome on ``PATH``; None when there is none."""
    given = os.environ.get("XCORR_CHROMIUM")
    if given:
        return given if os.path.isfile(given) and os.access(given, os.X_OK) else None
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    return None


@contextmanager
def chromium(**launch: Any) -> Iterator[Any]:
    """A launched headless Playwright ``Browser`` on the system's Chromium; `RuntimeError` with
    `INSTALL_HINT` when Chromium or Playwright is missing."""
    path = chromium_path()
    if path is None:
        raise RuntimeError(INSTALL_HINT)
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        raise RuntimeError("the browser tests need Playwright's client: pip install playwright") from exc
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=path, args=list(CHROMIUM_FLAGS), **launch)
        try:
            yield browser
        finally:
            browser.close()
