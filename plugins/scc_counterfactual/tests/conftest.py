from __future__ import annotations

from hypothesis import HealthCheck, settings

settings.register_profile("xcorr", deadline=None, derandomize=True, max_examples=30, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("xcorr")
