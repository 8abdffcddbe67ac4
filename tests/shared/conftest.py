"""Fixtures of the queue-script tests: every script against a real Redis and against fakeredis."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import fakeredis
import pytest
import redis.asyncio as aioredis

from shared.redis.keys import AccountKeys, Keys


@pytest.fixture(params=["real", "fake"])
async def r(request: Any, redis_url: str) -> AsyncIterator[aioredis.Redis]:
    if request.param == "real":
        client = aioredis.Redis.from_url(redis_url)
    else:
        client = fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer())
    yield client
    await client.aclose()


@pytest.fixture
def keys() -> AccountKeys:
    return Keys(f"t{uuid.uuid4().hex[:8]}").account("acct")
