"""Suite-wide configuration: Hypothesis profiles.

``ci`` (selected when ``CI=true``): derandomized, so a CI run is reproducible, with
more examples per property. ``dev`` (the default): fewer examples, random seeds, for
quick local runs. ``HYPOTHESIS_PROFILE`` overrides the choice.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci",
    derandomize=True,
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    print_blob=True,
)
settings.register_profile(
    "dev",
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

PROFILE = os.environ.get("HYPOTHESIS_PROFILE") or (
    "ci" if os.environ.get("CI", "").lower() == "true" else "dev"
)
settings.load_profile(PROFILE)


def pytest_report_header(config: pytest.Config) -> str:
    s = settings.default
    return (
        f"hypothesis profile: {PROFILE} (max_examples={s.max_examples}, "
        f"derandomize={s.derandomize})"
    )
