from __future__ import annotations

from hypothesis import settings

settings.load_profile("xcorr")  # registered by xcorr_core.testing's pytest plugin
