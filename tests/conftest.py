"""Shared test settings: hypothesis profiles (`HYPOTHESIS_PROFILE=thorough` for many more examples)
and one random seed per run for every property test that is not derandomized.

Each run draws fresh examples (CI checks new specs every time); the seed is printed in pytest's
header, and a failure is replayed with `pytest --hypothesis-seed=N` (or CSNSPEC_HYPOTHESIS_SEED=N).
"""

import os
import random
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

ROOT = Path(__file__).resolve().parent.parent
SPECS = sorted((ROOT / "specs").glob("*.csn"))

settings.register_profile(
    "ci",
    max_examples=30,
    print_blob=True,  # a failure also prints a @reproduce_failure blob
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
settings.register_profile(
    "thorough",
    max_examples=500,
    print_blob=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    """Pick the run's seed (unless --hypothesis-seed gave one) before hypothesis reads it."""
    if config.getoption("hypothesis_seed", None) is None:
        seed = os.environ.get("CSNSPEC_HYPOTHESIS_SEED") or random.SystemRandom().randrange(2**32)
        config.option.hypothesis_seed = str(seed)


def pytest_report_header(config):
    seed = config.getoption("hypothesis_seed", None)
    return f"hypothesis seed: {seed} (replay a failure with --hypothesis-seed={seed})"


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    # (the header is hidden under -q, the project's default: a failed run repeats the seed)
    if terminalreporter.stats.get("failed") or terminalreporter.stats.get("error"):
        terminalreporter.write_line(pytest_report_header(config))


def pytest_collection_modifyitems(config, items):
    """Tests marked `slow` run only with CSNSPEC_SLOW=1 (the thorough profile sets it too)."""
    import pytest

    if os.environ.get("CSNSPEC_SLOW") or os.environ.get("HYPOTHESIS_PROFILE") == "thorough":
        return
    skip = pytest.mark.skip(reason="slow: set CSNSPEC_SLOW=1")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
