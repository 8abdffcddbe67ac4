"""claim.lua's fair headroom: a fresh tenant's job may start a little ahead of its pacing slot on a
saturated account, a backlogged tenant's may not, and the account's rate stays its limit."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from shared.config import Account, Limits, QueueSettings
from shared.redis.keys import AccountKeys
from shared.redis.scripts import ClaimCode, LimitArgs, Scripts

pytestmark = pytest.mark.anyio


@pytest.fixture
async def real(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url)
    yield client
    await client.aclose()


async def enqueue_for(s: Scripts, keys: AccountKeys, tenant: str, n: int) -> list[str]:
    ids = []
    for i in range(n):
        job_id = f"{uuid.uuid4().hex[:6]}-{tenant}{i}"
        await s.enqueue(keys, job_id, b"x", (10, 10), False, 1000, tenant=tenant)
        ids.append(job_id)
    return ids


# 60 rpm (one start a second), no slack, a whole interval of headroom: a test's own few ms cannot
# move a start across a slot.
SLOW = LimitArgs(rpm=60, tpm=0, input_tpm=0, output_tpm=0, concurrency=0, request_tolerance_ms=0,
                 token_tolerance_ms=0, fair_headroom_ms=1000)


async def test_a_fresh_tenant_starts_in_the_headroom_a_backlog_may_not_use(r: aioredis.Redis,
                                                                             keys: AccountKeys) -> None:
    s = Scripts(r)
    flood = await enqueue_for(s, keys, "big", 10)
    got = await s.claim(keys, SLOW, QueueSettings(), 5)
    # the backlog's next job is one interval away, inside the headroom: it still waits
    assert [c[0] for c in got.claimed] == flood[:1] and got.code is ClaimCode.LIMITER_WAIT
    assert 0 < got.wait_ms <= 1000
    [trickle] = await enqueue_for(s, keys, "small", 1)
    got = await s.claim(keys, SLOW, QueueSettings(), 5)
    assert [c[0] for c in got.claimed] == [trickle]  # at once, in the headroom
    # it took the backlog's slot: the backlog now waits a further interval
    assert got.code is ClaimCode.LIMITER_WAIT and 1000 < got.wait_ms <= 2000
    # the trickle's next job is backlogged in virtual time until the others had their turn, so one
    # tenant cannot live on the headroom
    [again] = await enqueue_for(s, keys, "small", 1)
    got = await s.claim(keys, SLOW, QueueSettings(), 5)
    assert got.claimed == [] and got.code is ClaimCode.LIMITER_WAIT and got.wait_ms > 1000
    assert await r.zscore(keys.ready, again) is not None


async def test_without_headroom_a_fresh_tenant_waits_like_the_backlog(r: aioredis.Redis,
                                                                     keys: AccountKeys) -> None:
    s = Scripts(r)
    none = dataclasses.replace(SLOW, fair_headroom_ms=0)
    await enqueue_for(s, keys, "big", 10)
    await s.claim(keys, none, QueueSettings(), 5)
    [trickle] = await enqueue_for(s, keys, "small", 1)
    got = await s.claim(keys, none, QueueSettings(), 5)
    assert got.claimed == [] and got.code is ClaimCode.LIMITER_WAIT and 0 < got.wait_ms <= 1000
    assert (await r.zrange(keys.ready, 0, 0))[0].decode() == trickle  # still first in line


async def test_fresh_starts_never_push_the_rate_past_the_limit(real: aioredis.Redis, keys: AccountKeys) -> None:
    """A flood and a new tenant every few claims, paced the way the worker paces: however the
    headroom is used, the starts stay within GCRA's bound for tolerance + headroom."""
    s = Scripts(real)
    paced = LimitArgs.of(Account(name="acct", provider="mock", limits=Limits(rpm=6000)))  # 10 ms apart
    limits = dataclasses.replace(paced, concurrency=0)  # nothing is acked here: only the rate may hold starts back
    interval = 10
    tolerance = limits.request_tolerance_ms + limits.fair_headroom_ms
    assert limits.fair_headroom_ms == interval
    await enqueue_for(s, keys, "big", 300)
    sec, usec = await real.time()
    t0 = sec * 1000 + usec / 1000
    starts = fresh_at_once = fresh_sent = 0
    for step in range(120):
        got = await s.claim(keys, limits, QueueSettings(), 32)
        starts += len(got.claimed)
        if step % 4 == 3 and got.code is ClaimCode.LIMITER_WAIT:
            # a new tenant arrives while the backlog waits for its slot (the worker's nudge)
            [trickle] = await enqueue_for(s, keys, f"small{step}", 1)
            fresh_sent += 1
            got = await s.claim(keys, limits, QueueSettings(), 32)
            starts += len(got.claimed)
            fresh_at_once += trickle in [c[0] for c in got.claimed]
        # GCRA's invariant after any claim: the bucket is at most tolerance + one interval ahead
        sec, usec = await real.time()
        now = sec * 1000 + usec / 1000
        tat = float(await real.hget(keys.rl, "tat_r") or 0)  # type: ignore[misc]
        assert tat - now <= tolerance + interval + 1
        if got.code is ClaimCode.LIMITER_WAIT:
            await asyncio.sleep(got.wait_ms / 1000)  # the worker's own pacing
    elapsed = now - t0
    # at most one start per interval, plus the burst the largest tolerance allows
    assert starts <= (elapsed + tolerance) / interval + 1
    assert starts >= 60  # the flood kept the account busy
    assert fresh_sent >= 20 and fresh_at_once == fresh_sent  # every new tenant started with no wait


async def test_a_fresh_job_behind_a_backlog_nudges_the_workers(real: aioredis.Redis, keys: AccountKeys) -> None:
    s = Scripts(real)
    pubsub = real.pubsub()
    await pubsub.subscribe(keys.nudge)
    try:
        confirmed = await pubsub.get_message(timeout=5)  # subscribed before anything is published
        assert confirmed is not None and confirmed["type"] == "subscribe"
        await enqueue_for(s, keys, "big", 5)  # into an empty lane (the doorbell's case), then backlogged
        await enqueue_for(s, keys, "small", 1)  # starts at v ahead of the backlog: nudges
        await real.publish(keys.nudge, "end")  # everything published before it arrives before it
        seen: list[bytes] = []
        while not seen or seen[-1] != b"end":
            message = await pubsub.get_message(timeout=5)
            assert message is not None, "the sentinel never came"
            seen.append(message["data"])
        assert seen == [b"1", b"end"]
    finally:
        await pubsub.aclose()  # type: ignore[no-untyped-call]


async def test_only_a_tenant_with_nothing_waiting_is_fresh(r: aioredis.Redis, keys: AccountKeys) -> None:
    """Two backlogged tenants of equal weight tie at the virtual time, rank for rank; the tie must
    not let the second of each pair into the headroom."""
    s = Scripts(r)
    a = await enqueue_for(s, keys, "a", 3)
    b = await enqueue_for(s, keys, "b", 3)
    fresh = [job for job in a + b if await r.hexists(keys.meta, f"{job}:f")]  # type: ignore[misc]
    assert fresh == [a[0], b[0]]  # each tenant's first job found it idle; the rest queue behind it
    [(first, _, _)] = (await s.claim(keys, SLOW, QueueSettings(), 1)).claimed
    assert first in (a[0], b[0])  # the two tie at the same tag
    assert not await r.hexists(keys.meta, f"{first}:f")  # type: ignore[misc]  # a claim ends it
    c = await enqueue_for(s, keys, "c", 1)
    assert await r.hexists(keys.meta, f"{c[0]}:f")  # type: ignore[misc]
