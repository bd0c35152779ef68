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
