"""pytest plugin of `xcorr_core.testing` (entry point ``pytest11: xcorr``): fixtures and the
hypothesis profile that plugin authors' tests share.

Loaded by pytest in any environment where xcorr-core is installed; it only registers things and
loads nothing heavy until a fixture is used. Fixtures:

- ``xcorr_maps``: `random_maps()`, a query `[256, 7, 7]` and 6 candidates `[6, 256, 7, 7]`;
- ``xcorr_birds``: a small SynthBirds test set (4 classes x 3 images, 112 px);
- ``xcorr_birds_model``: the shipped SynthBirds classifier, in eval mode;
- ``xcorr_cases``: kNN decisions on ``xcorr_birds`` against a SynthBirds train gallery, as the
  `Case` objects a pipeline gives explainers (image, target, prediction, confidence, neighbours);
- ``xcorr_demo_context``: a `DemoContext` like the one ``xcorr demo`` hands a section (the shipped
  models, SynthBirds train 2 per class, test sets of 1 per class, SynthHerd 4 individuals),
  writing into a fresh temporary folder: call your ``register_demo_sections`` function with it.

The hypothesis profile ``xcorr`` (no deadline, derandomised, 30 examples, slow-data health check
off) is registered, not loaded: a test suite opts in with ``settings.load_profile("xcorr")``.
"""
from __future__ import annotations

from typing import Any

import pytest


def _register_profile() -> None:
    try:
        from hypothesis import HealthCheck, settings
    except ImportError:  # pytest without hypothesis: the fixtures still work
        return
    settings.register_profile("xcorr", deadline=None, derandomize=True, max_examples=30,
                              suppress_health_check=[HealthCheck.too_slow])


# at import: pytest loads entry-point plugins before any conftest.py, which may then load the profile
_register_profile()


@pytest.fixture
def xcorr_maps() -> Any:
    from .conformance import random_maps

    return random_maps()


@pytest.fixture(scope="session")
def xcorr_birds() -> Any:
    from ..data import SynthBirds

    return SynthBirds("test", per_class=3, num_classes=4, progress=False)


@pytest.fixture(scope="session")
def xcorr_birds_model() -> Any:
    from ..models import load_pretrained

    return load_pretrained("birds").eval()


@pytest.fixture(scope="session")
def xcorr_cases(xcorr_birds: Any, xcorr_birds_model: Any) -> Any:
    from .cases import knn_cases

    return knn_cases(xcorr_birds_model, xcorr_birds)


@pytest.fixture
def xcorr_demo_context(tmp_path: Any) -> Any:
    from ..data import SynthBirds, SynthHerd
    from ..demo import DemoContext
    from ..fileio import make_dir
    from ..models import load_pretrained

    make_dir(tmp_path / "figures")
    return DemoContext(out=tmp_path, progress=False, birds_model=load_pretrained("birds").eval(), herd_model=load_pretrained("herd").eval(),
                       birds_train=SynthBirds("train", per_class=2, progress=False),
                       birds_test={v if v != "clean" else "test": SynthBirds("test", v, per_class=1, progress=False)  # type: ignore[arg-type]
                                   for v in ("clean", "sticker", "style")},
                       herd_test=SynthHerd("test", individuals=4, progress=False))

