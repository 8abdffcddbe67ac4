"""A job that goes back to a queue goes back to its own lane: a batch line handed back by a draining
worker (handback.lua) or replayed from the dead letters (dlq_replay.lua) is batch work again, so it
neither jumps ahead of interactive traffic nor escapes `batch_min_share`."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from shared.config import Account, Limits, QueueSettings
from shared.jobs import Job, encode_job
from shared.model import ChatRequest, Message, Text
from shared.redis.dlq import DeadLetter, DeadLetters
from shared.redis.handback import HandBack
from shared.redis.keys import Keys
from shared.redis.scripts import LimitArgs, Scripts

pytestmark = pytest.mark.anyio

QUEUE = QueueSettings(lease_seconds=60)
LIMITS = LimitArgs.of(Account(name="a", provider="mock", limits=Limits(concurrency=0)))


def job() -> Job:
    now = int(time.time() * 1000)
    req = ChatRequest(model="m", messages=[Message("user", [Text("hi")])], max_tokens=8)
    return Job(id=uuid.uuid4().hex[:12], account="a", upstream_model="up", request=req, reply_to="",
               enqueued_ms=now, deadline_ms=now + 60_000, input_estimate=3, output_reserve=8, priority="batch")


@pytest.fixture
async def r(redis_url: str) -> AsyncIterator[tuple[aioredis.Redis, Keys]]:
    client = aioredis.Redis.from_url(redis_url)
    keys = Keys(f"t{uuid.uuid4().hex[:8]}")
    yield client, keys
    found = [k async for k in client.scan_iter(match=f"{keys.prefix}:*")]
    if found:
        await client.delete(*found)
    await client.aclose()


async def claimed_line(client: aioredis.Redis, keys: Keys) -> Job:
    s, a, line = Scripts(client), keys.account("a"), job()
    await s.enqueue(a, line.id, encode_job(line), (3, 8), True, 100)
    assert [c[0] for c in (await s.claim(a, LIMITS, QUEUE, 1)).claimed] == [line.id]
    return line


async def test_a_handed_back_batch_line_returns_to_the_batch_lane(r: tuple[aioredis.Redis, Keys]) -> None:
    client, keys = r
    a = keys.account("a")
    line = await claimed_line(client, keys)
    assert await HandBack(client)(a, LIMITS, line.id, False)
    assert await client.zrange(a.bready, 0, -1) == [line.id.encode()] and await client.zcard(a.ready) == 0


async def test_a_replayed_batch_line_returns_to_the_batch_lane(r: tuple[aioredis.Redis, Keys]) -> None:
    client, keys = r
    a = keys.account("a")
    line = await claimed_line(client, keys)
    dlq = DeadLetters(client, keys)
    assert await dlq.dead_letter(a, DeadLetter(line.id, "a", "test", "upstream_unavailable", 503, 3))
    assert await dlq.replay("a", line.id, 60_000, int(time.time() * 1000))
    assert await client.zrange(a.bready, 0, -1) == [line.id.encode()] and await client.zcard(a.ready) == 0
