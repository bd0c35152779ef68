from __future__ import annotations

import os

import pytest
import torch
from hypothesis import HealthCheck, settings

settings.register_profile("xcorr", deadline=None, derandomize=True, max_examples=40, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "xcorr"))
torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(autouse=True)
def _fresh_registry(monkeypatch: pytest.MonkeyPatch):
    """Every core test starts from the core's built-ins only: installed plugins (whatever
    `make` put in the venv) and in-process registrations are not loaded."""
    import xcorr_core

    monkeypatch.setenv("XCORR_PLUGINS", "")
    xcorr_core.reload_plugins()
    yield
    xcorr_core.reload_plugins()


@pytest.fixture
def all_plugins(monkeypatch: pytest.MonkeyPatch):
    """Every installed plugin (the core's tests otherwise load none)."""
    import xcorr_core

    monkeypatch.delenv("XCORR_PLUGINS", raising=False)
    xcorr_core.reload_plugins()
    yield
    xcorr_core.reload_plugins()


@pytest.fixture(scope="session")
def tiny_model():
    from xcorr_core.models import SmallResNet

    torch.manual_seed(0)
    return SmallResNet(24).eval()


@pytest.fixture(scope="session")
def tiny_birds():
    from xcorr_core.data import SynthBirds

    return SynthBirds("train", per_class=4, progress=False), SynthBirds("test", per_class=2, progress=False)


@pytest.fixture(scope="session")
def browse_job(tmp_path_factory: pytest.TempPathFactory):
    """A finished job (SynthBirds test, 2 per class = 48 queries; kNN and the test re-ranker
    `test_patchmax`, explanations on) and its browser site in 16-row data files (3 files)."""
    from patchmax import register, small_job

    import xcorr_core
    from xcorr_core.browse import build_site
    from xcorr_core.jobs import run_job

    root = tmp_path_factory.mktemp("browse")
    before = os.environ.get("XCORR_PLUGINS")
    os.environ["XCORR_PLUGINS"] = ""
    try:
        xcorr_core.reload_plugins()
        register()
        run_job(small_job(explain="all"), root / "job", progress=False)
        report = build_site(root / "job", root / "site", chunk_rows=16, progress=False)
    finally:
        if before is None:
            del os.environ["XCORR_PLUGINS"]
        else:
            os.environ["XCORR_PLUGINS"] = before
        xcorr_core.reload_plugins()
    return root / "job", root / "site", report
