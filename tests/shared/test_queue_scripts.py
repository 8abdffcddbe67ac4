"""The Lua queue steps, on a real Redis and on fakeredis: claim, limits, ack, release, reaping."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
import redis.asyncio as aioredis

from shared.config import Account, Limits, QueueSettings
from shared.redis.keys import AccountKeys
from shared.redis.scripts import LimitArgs, Scripts

pytestmark = pytest.mark.anyio


def limits(**kw: Any) -> LimitArgs:
    return LimitArgs.of(Account(name="acct", provider="mock", limits=Limits(**kw)))


async def enqueue(scripts: Scripts, keys: AccountKeys, n: int, cost: tuple[int, int] = (10, 10),
                  batch: bool = False) -> list[str]:
    ids = []
    for i in range(n):
        job_id = f"{uuid.uuid4().hex[:6]}-job{i}"  # random prefix: order must come from arrival, not id
        await scripts.enqueue(keys, job_id, f"payload-{i}".encode(), cost, batch, 1000)
        ids.append(job_id)
    return ids


async def test_claim_is_fifo_and_moves_jobs_in_flight(r: aioredis.Redis, keys: AccountKeys) -> None:
    s = Scripts(r)
    ids = await enqueue(s, keys, 3)
    got = await s.claim(keys, limits(), QueueSettings(), 2)
    assert [c[0] for c in got.claimed] == ids[:2]
    assert got.claimed[0][1] == b"payload-0" and got.claimed[0][2] == 0
    assert await r.zcard(keys.ready) == 1 and await r.zcard(keys.inflight) == 2


async def test_queue_cap_rejects_instead_of_growing(r: aioredis.Redis, keys: AccountKeys) -> None:
    s = Scripts(r)
    assert await s.enqueue(keys, "a", b"x", (1, 1), False, 2) == 1
    assert await s.enqueue(keys, "b", b"x", (1, 1), False, 2) == 2
    assert await s.enqueue(keys, "c", b"x", (1, 1), False, 2) == -1
    assert await r.zcard(keys.ready) == 2


async def test_rpm_paces_claims_and_names_the_wait(r: aioredis.Redis, keys: AccountKeys) -> None:
    s = Scripts(r)
    await enqueue(s, keys, 3)
    got = await s.claim(keys, limits(rpm=60), QueueSettings(), 3)
    assert len(got.claimed) == 1 and got.code == 1
    assert 900 <= got.wait_ms <= 1000  # one request per second


async def test_concurrency_cap(r: aioredis.Redis, keys: AccountKeys) -> None:
    s = Scripts(r)
    await enqueue(s, keys, 3)
    got = await s.claim(keys, limits(concurrency=2), QueueSettings(), 3)
    assert len(got.claimed) == 2 and got.code == 2


async def test_large_request_is_admitted_into_debt_not_starved(r: aioredis.Redis, keys: AccountKeys) -> None:
    s = Scripts(r)
    await enqueue(s, keys, 1, cost=(50_000, 50_000))  # 100k tokens against a 60k tpm limit
    await enqueue(s, keys, 1, cost=(1, 1))
    got = await s.claim(keys, limits(tpm=60_000), QueueSettings(), 2)
    assert len(got.claimed) == 1 and got.code == 1
    assert got.wait_ms > 90_000  # the small one waits out the big one's debt


async def test_ack_refunds_unused_reservation(r: aioredis.Redis, keys: AccountKeys) -> None:
    s = Scripts(r)
    lim = limits(tpm=60_000)
    ids = await enqueue(s, keys, 2, cost=(1000, 29_000))  # reserves half a minute each
    first = await s.claim(keys, lim, QueueSettings(), 2)
    assert len(first.claimed) == 1 and first.wait_ms > 25_000
    assert await s.ack(keys, lim, ids[0], (500, 500), "completed")  # used 1k of 30k
    second = await s.claim(keys, lim, QueueSettings(), 2)
    # the 1k tokens really used still cost one second at 60k tpm; the other 29 s came back
    assert not second.claimed and second.code == 1 and second.wait_ms <= 1000
    assert await r.hget(keys.stats, "completed") == b"1"
    assert await r.hget(keys.jobs, ids[0]) is None


async def test_release_requeues_at_its_place_and_blocks_the_account(r: aioredis.Redis, keys: AccountKeys) -> None:
    s = Scripts(r)
    ids = await enqueue(s, keys, 2)
    got = await s.claim(keys, limits(), QueueSettings(), 1)
    assert got.claimed[0][0] == ids[0]
    assert await s.release(keys, limits(), ids[0], 5000, "upstream_429")
    blocked = await s.claim(keys, limits(), QueueSettings(), 2)
    assert blocked.code == 3 and 4000 < blocked.wait_ms <= 5000 and not blocked.claimed
    assert (await r.zrange(keys.ready, 0, -1)) == [ids[0].encode(), ids[1].encode()]


async def test_expired_lease_is_reclaimed_then_dead_lettered(r: aioredis.Redis, keys: AccountKeys) -> None:
    s = Scripts(r)
    [job] = await enqueue(s, keys, 1)
    q = QueueSettings(lease_seconds=0.0, max_attempts=2)
    first = await s.claim(keys, limits(), q, 1)
    assert first.claimed[0][2] == 0
    # lease of 0 ms: already expired at the next claim, which re-queues and re-claims it
    again = await s.claim(keys, limits(), q, 1)
    assert again.claimed and again.claimed[0][0] == job and again.claimed[0][2] == 1
    dead = await s.claim(keys, limits(), q, 1)
    assert [d[0] for d in dead.dead] == [job] and not dead.claimed
    assert await r.zscore(keys.dlq, job) is not None


async def test_heartbeat_extends_leases_and_reports_lost_ones(r: aioredis.Redis, keys: AccountKeys) -> None:
    s = Scripts(r)
    [job] = await enqueue(s, keys, 1)
    await s.claim(keys, limits(), QueueSettings(lease_seconds=1), 1)
    before = await r.zscore(keys.inflight, job)
    lost = await s.heartbeat(keys, 60_000, "w1", [job, "gone"])
    assert lost == ["gone"]
    assert (await r.zscore(keys.inflight, job) or 0) > (before or 0) + 50_000
    assert await r.zscore(keys.workers, "w1") is not None


async def test_cancel_only_removes_unclaimed_jobs(r: aioredis.Redis, keys: AccountKeys) -> None:
    s = Scripts(r)
    ids = await enqueue(s, keys, 2)
    await s.claim(keys, limits(), QueueSettings(), 1)
    assert not await s.cancel(keys, ids[0])
    assert await s.cancel(keys, ids[1])
    assert await r.zcard(keys.ready) == 0


async def test_interactive_work_goes_first_however_old_the_batch_work(r: aioredis.Redis, keys: AccountKeys) -> None:
    s = Scripts(r)
    batch = await enqueue(s, keys, 2, batch=True)
    await r.zadd(keys.bready, {batch[0]: 0, batch[1]: 1})  # as old as a batch line can be
    interactive = await enqueue(s, keys, 2)
    got = await s.claim(keys, limits(), QueueSettings(batch_min_share=0.0), 4)
    assert [c[0] for c in got.claimed] == interactive + batch


async def test_batch_lane_gets_its_share_under_permanent_interactive_load(r: aioredis.Redis,
                                                                          keys: AccountKeys) -> None:
    s = Scripts(r)
    batch = set(await enqueue(s, keys, 30, batch=True))
    taken: list[bool] = []
    for _ in range(100):
        await enqueue(s, keys, 1)  # interactive work never runs out
        [(job_id, _, _)] = (await s.claim(keys, limits(), QueueSettings(batch_min_share=0.1), 1)).claimed
        taken.append(job_id in batch)
        await s.ack(keys, limits(), job_id, None, "completed")
    assert sum(taken) == 10  # exactly the share, spread out: every tenth claim
    assert [i for i, b in enumerate(taken) if b] == list(range(9, 100, 10))


async def test_an_idle_batch_lane_banks_no_credit(r: aioredis.Redis, keys: AccountKeys) -> None:
    s = Scripts(r)
    queue = QueueSettings(batch_min_share=0.3)
    await enqueue(s, keys, 3)
    await s.claim(keys, limits(), queue, 3)  # no batch work waiting: nothing earned
    assert await r.hget(keys.meta, "#bc") is None
    [batch] = await enqueue(s, keys, 1, batch=True)
    interactive = await enqueue(s, keys, 5)
    got = [c[0] for c in (await s.claim(keys, limits(), queue, 5)).claimed]
    assert got == [*interactive[:3], batch, interactive[3]]  # credit 300, 600, 900, 1200 -> batch
    assert await r.hget(keys.meta, "#bc") is None  # 200 left over, dropped once the lane was empty


async def test_a_released_or_reclaimed_batch_job_goes_back_to_its_own_lane(r: aioredis.Redis,
                                                                            keys: AccountKeys) -> None:
    s = Scripts(r)
    [job] = await enqueue(s, keys, 1, batch=True)
    await s.claim(keys, limits(), QueueSettings(), 1)
    assert await s.release(keys, limits(), job, 0, "upstream_429")
    assert await r.zscore(keys.bready, job) is not None and await r.zcard(keys.ready) == 0
    await s.claim(keys, limits(), QueueSettings(lease_seconds=0), 1)
    await s.claim(keys, limits(), QueueSettings(lease_seconds=0), 0)  # reaps the expired lease
    assert await r.zscore(keys.bready, job) is not None and await r.zcard(keys.ready) == 0
    assert await s.cancel(keys, job)
    assert await r.zcard(keys.bready) == 0 and not await r.hexists(keys.meta, f"{job}:l")  # type: ignore[misc]


async def enqueue_for(scripts: Scripts, keys: AccountKeys, tenant: str, n: int, weight: float = 1.0) -> list[str]:
    ids = []
    for i in range(n):
        job_id = f"{uuid.uuid4().hex[:6]}-{tenant}{i}"
        await scripts.enqueue(keys, job_id, b"x", (10, 10), False, 1000, tenant=tenant, weight=weight)
        ids.append(job_id)
    return ids


async def claim_all(scripts: Scripts, keys: AccountKeys, n: int) -> list[str]:
    """Up to n head jobs, claimed one at a time (as a busy account's worker would)."""
    got: list[str] = []
    for _ in range(n):
        claimed = (await scripts.claim(keys, limits(), QueueSettings(), 1)).claimed
        if not claimed:
            break
        got.append(claimed[0][0])
        await scripts.ack(keys, limits(), claimed[0][0], None, "completed")
    return got


async def test_a_trickle_starts_ahead_of_another_tenants_flood(r: aioredis.Redis, keys: AccountKeys) -> None:
    s = Scripts(r)
    flood = await enqueue_for(s, keys, "big", 50)
    await claim_all(s, keys, 5)
    [trickle] = await enqueue_for(s, keys, "small", 1)
    assert await claim_all(s, keys, 2) == [trickle, flood[5]]  # not behind the 45 still queued
    # each tenant alone is served in its own arrival order
    assert await claim_all(s, keys, 50) == flood[6:]


async def test_backlogged_tenants_share_claims_by_weight(r: aioredis.Redis, keys: AccountKeys) -> None:
    s = Scripts(r)
    heavy = set(await enqueue_for(s, keys, "heavy", 40, weight=3))
    await enqueue_for(s, keys, "light", 40, weight=1)
    first = await claim_all(s, keys, 40)
    assert sum(job in heavy for job in first) == 30  # 3 : 1 while both wait


async def test_an_idle_tenant_banks_no_credit(r: aioredis.Redis, keys: AccountKeys) -> None:
    s = Scripts(r)
    await enqueue_for(s, keys, "busy", 20)
    await claim_all(s, keys, 20)  # busy ran alone; idle sent nothing meanwhile
    busy = set(await enqueue_for(s, keys, "busy", 10))
    await enqueue_for(s, keys, "idle", 10)
    order = [job in busy for job in await claim_all(s, keys, 20)]
    # shared from the start: the idle tenant's quiet spell earned it no run of claims
    # (equal start tags tie, so a pair may come in either order)
    assert 4 <= sum(order[:10]) <= 6
    assert all(order[i:i + 3] not in ([True] * 3, [False] * 3) for i in range(8))


async def test_learned_provider_limit_caps_the_configured_rate(r: aioredis.Redis, keys: AccountKeys) -> None:
    s = Scripts(r)
    await enqueue(s, keys, 3)
    assert await s.learn(keys, {"r": 30}) == 1  # the provider says 30/min; config says 600
    got = await s.claim(keys, limits(rpm=600), QueueSettings(), 3)
    assert len(got.claimed) == 1 and 1900 <= got.wait_ms <= 2000  # paced at 30/min, not 600
    assert await s.learn(keys, {"r": 0}) == 1  # the provider allows our rate again: cap cleared
    assert await r.hget(keys.rl, "cap_r") is None
