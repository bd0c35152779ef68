"""The example third-party plugin, pip-installed into this venv and found through entry points."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

TEMPLATE = Path(__file__).resolve().parents[1] / "examples" / "plugin_template"


def _pip(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check", "-q", *args], capture_output=True, text=True)


@pytest.fixture(scope="module")
def installed_template():
    r = _pip("install", "--no-deps", "--no-build-isolation", str(TEMPLATE))
    assert r.returncode == 0, r.stderr
    try:
        yield
    finally:
        _pip("uninstall", "-y", "xcorr-plugin-template")


@pytest.mark.slow
def test_template_is_found_and_its_tests_pass(installed_template, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "XCORR_PLUGINS"}  # load every installed plugin
    out = subprocess.run([sys.executable, "-m", "xcorr_core.cli", "plugins", "--json"], capture_output=True, text=True, check=True,
                         env=env).stdout
    plugins = {p["name"]: p for p in json.loads(out)}
    assert plugins["template"]["error"] is None
    kinds = {c["kind"] for c in plugins["template"]["components"]}
    assert kinds == {"explainer", "matcher", "reranker", "metric"}
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(TEMPLATE / "tests")],
                       capture_output=True, text=True, cwd=tmp_path, env=env)
    assert r.returncode == 0, r.stdout + r.stderr
