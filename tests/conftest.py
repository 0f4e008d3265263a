"""Shared test settings: hypothesis profiles (`HYPOTHESIS_PROFILE=thorough` for many more examples)."""

import os
from pathlib import Path

from hypothesis import HealthCheck, settings

ROOT = Path(__file__).resolve().parent.parent
SPECS = sorted((ROOT / "specs").glob("*.csn"))

settings.register_profile(
    "ci",
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
settings.register_profile(
    "thorough",
    max_examples=500,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def pytest_collection_modifyitems(config, items):
    """Tests marked `slow` run only with CSNSPEC_SLOW=1 (the thorough profile sets it too)."""
    import pytest

    if os.environ.get("CSNSPEC_SLOW") or os.environ.get("HYPOTHESIS_PROFILE") == "thorough":
        return
    skip = pytest.mark.skip(reason="slow: set CSNSPEC_SLOW=1")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
