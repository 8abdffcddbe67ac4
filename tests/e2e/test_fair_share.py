"""Fair share on a shared account, end to end: one client key's flood does not starve another's
request (start-time fair queuing in enqueue.lua; the Lua-level rules are in
tests/shared/test_queue_scripts.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from shared.redis.keys import Keys
from tests.conftest import CLIENT_KEY, OTHER_CLIENT_KEY, SluiceSystem, wait_until

FLOOD = 30


@pytest.fixture
def system(tmp_path: Path, redis_url: str) -> Iterator[SluiceSystem]:
    # 600 rpm: one start every 100 ms, so the flood stays queued for about three seconds
    running = SluiceSystem(tmp_path, redis_url, accounts=[{"name": "shared", "limits": {"rpm": 600}}],
                           models=[{"name": "m", "route": [{"account": "shared", "model": "mock-model"}]}])
    yield running
    running.close()


def client(system: SluiceSystem, key: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{system.base_url}/v1", api_key=key, max_retries=0, timeout=60)


async def ask(api: openai.AsyncOpenAI, text: str) -> str:
    answer = await api.chat.completions.create(model="m", messages=[{"role": "user", "content": text}],
                                               max_tokens=8)
    return answer.id


async def run(system: SluiceSystem) -> tuple[int, int]:
    big, small = client(system, CLIENT_KEY), client(system, OTHER_CLIENT_KEY)
    flood = [asyncio.create_task(ask(big, f"flood {i}")) for i in range(FLOOD)]
    ready = Keys(system.prefix).account("shared").ready
    # the flood is queued before the small tenant asks (polled, not slept)
    await asyncio.to_thread(wait_until, lambda: system.redis.zcard(ready) >= FLOOD - 5, 20, "the flood queued")
    await ask(small, "a trickle")
    still_waiting = sum(not task.done() for task in flood)
    await asyncio.gather(*flood)
    return still_waiting, FLOOD


def test_a_small_tenant_is_served_ahead_of_another_tenants_backlog(system: SluiceSystem) -> None:
    still_waiting, flood = asyncio.run(run(system))
    # arrival order would have put it behind every queued flood request
    assert still_waiting >= flood - 8, f"only {still_waiting} of {flood} flood requests were still queued"
