"""Worker tests run against the real mock provider, served by uvicorn on a loopback port."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import pytest

from shared.mock import MockSettings
from tests.shared.mock.conftest import _live


@pytest.fixture
def live_upstream() -> Callable[[MockSettings], contextlib.AbstractContextManager[str]]:
    """`with live_upstream(MockSettings(...)) as base_url:` the mock provider on 127.0.0.1."""
    return _live
