"""The fault-injection suite: real processes (API, workers, redis-server, mock provider), real faults.

Tests marked `slow` (the full-size runs docs/reliability.md quotes) run only with SLUICE_SLOW=1:
    SLUICE_SLOW=1 bash scripts/test.sh -q tests/faults -m slow
"""

from __future__ import annotations

import os

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get("SLUICE_SLOW"):
        return
    skip = pytest.mark.skip(reason="full-size fault run: set SLUICE_SLOW=1")
    for item in items:
        if "slow" in item.keywords and "tests/faults" in str(item.fspath):
            item.add_marker(skip)
