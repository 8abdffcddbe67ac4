"""The three-step move of a queued job between accounts (shared/redis/moves.py), on the real Redis.

The contention test races movers (both directions, some dying between steps) against claimers on
both accounts and checks the one property that matters: every job is claimed exactly once, and
nothing is left behind in any queue or in `moving`.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from shared.config import Account, Config, Limits, Model, QueueSettings, RouteTarget
from shared.jobs import Job, decode_job, encode_job
from shared.model import ChatRequest, Message, Text
from shared.redis.keys import Keys
from shared.redis.moves import Moves, Moving
from shared.redis.scripts import LimitArgs, Scripts
from worker.rebalance import rewrite_for

pytestmark = pytest.mark.anyio

QUEUE = QueueSettings(lease_seconds=60)
LIMITS = LimitArgs.of(Account(name="x", provider="mock", limits=Limits(concurrency=0)))


def config() -> Config:
    return Config(accounts=[Account(name="a", provider="mock"), Account(name="b", provider="mock")],
                  models=[Model(name="m", route=[RouteTarget("a", "up-a"), RouteTarget("b", "up-b")])])


def job(account: str = "a", job_id: str | None = None) -> Job:
    now = int(time.time() * 1000)
    req = ChatRequest(model="m", messages=[Message("user", [Text("hi")])], max_tokens=8)
    return Job(id=job_id or uuid.uuid4().hex[:12], account=account, upstream_model=f"up-{account}", request=req,
               reply_to="", enqueued_ms=now, deadline_ms=now + 60_000, input_estimate=3, output_reserve=8)


@pytest.fixture
async def r(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url)
    yield client
    await client.aclose()


@pytest.fixture
def keys() -> Keys:
    return Keys(f"t{uuid.uuid4().hex[:8]}")


async def put(s: Scripts, keys: Keys, j: Job, batch: bool = False) -> None:
    await s.enqueue(keys.account(j.account), j.id, encode_job(j), (3, 8), batch, 10_000)


async def test_a_moved_job_is_claimed_on_the_target_rewritten_for_it(r: aioredis.Redis, keys: Keys) -> None:
    s, moves, rewrite = Scripts(r), Moves(r, keys), rewrite_for(config())
    j = job()
    await put(s, keys, j)
    assert await moves.move(j, "a", "b", rewrite)
    assert not (await s.claim(keys.account("a"), LIMITS, QUEUE, 5)).claimed
    got = (await s.claim(keys.account("b"), LIMITS, QUEUE, 5)).claimed
    assert [c[0] for c in got] == [j.id]
    moved = decode_job(got[0][1])
    assert (moved.account, moved.upstream_model, moved.moves) == ("b", "up-b", 1)
    assert await r.hget(keys.account("b").meta, j.id) == b"3:8"  # the reservation travels with it
    assert await r.hlen(keys.account("a").jobs) == 0 and await r.hlen(keys.account("a").moving) == 0
    assert await moves.moved_to("a", j.id) == "b"


async def test_a_batch_line_moves_onto_the_batch_lane_and_stays_batch_work(r: aioredis.Redis, keys: Keys) -> None:
    s, moves, rewrite = Scripts(r), Moves(r, keys), rewrite_for(config())
    a, b = keys.account("a"), keys.account("b")
    line, chat = job(), job()
    await put(s, keys, line, batch=True)
    await put(s, keys, chat)
    assert await moves.move(line, "a", "b", rewrite) and await moves.move(chat, "a", "b", rewrite)
    assert await r.zrange(b.bready, 0, -1) == [line.id.encode()]
    assert await r.zrange(b.ready, 0, -1) == [chat.id.encode()]
    assert await r.hget(b.meta, f"{line.id}:l") == b"1" and await r.hget(b.meta, f"{chat.id}:l") is None
    assert not [k for k in await r.hkeys(a.meta) if k.startswith(line.id.encode())]  # source forgot it
    # a lease that lapses (its worker died) puts the moved line back on the target's batch lane:
    # a zero lease has lapsed by the next claim, which reaps before it claims
    lapsing = QueueSettings(lease_seconds=0)
    assert [c[0] for c in (await s.claim(b, LIMITS, lapsing, 2)).claimed] == [chat.id, line.id]
    assert not (await s.claim(b, LIMITS, lapsing, 0)).claimed
    assert await r.zrange(b.bready, 0, -1) == [line.id.encode()]
    assert await r.zrange(b.ready, 0, -1) == [chat.id.encode()]


async def test_a_claimed_job_cannot_be_moved(r: aioredis.Redis, keys: Keys) -> None:
    s, moves = Scripts(r), Moves(r, keys)
    j = job()
    await put(s, keys, j)
    assert (await s.claim(keys.account("a"), LIMITS, QUEUE, 1)).claimed
    assert not await moves.move(j, "a", "b", rewrite_for(config()))
    assert await r.zcard(keys.account("b").ready) == 0


async def test_a_mover_that_died_midway_is_finished_once_by_anyone(r: aioredis.Redis, keys: Keys) -> None:
    s, moves, rewrite = Scripts(r), Moves(r, keys), rewrite_for(config())
    dead_after_out, dead_after_adopt = job(), job()
    for j in (dead_after_out, dead_after_adopt):
        await put(s, keys, j)
        a = keys.account("a")
        assert await moves._out(keys=[a.ready, a.moving, a.bready], args=[j.id, "b", 1])
    # the second mover got as far as adopting before it died
    entry = Moving(dead_after_adopt.id, "b", 1, 0)
    b = keys.account("b")
    await moves._adopt(keys=[b.ready, b.jobs, b.meta, b.bell, b.adopted, b.moved, b.moved_at, b.bready],
                       args=[entry.job_id, 1, encode_job(dead_after_adopt), "3:8", 1, 0, 0])
    # ... and the target already ran it: a replay of step 2 must not bring it back
    assert (await s.claim(b, LIMITS, QUEUE, 1)).claimed
    assert await s.ack(b, LIMITS, dead_after_adopt.id, (1, 1), "completed")
    now = int(time.time() * 1000)
    assert await moves.finish_stale("a", 5000, now, rewrite) == 0  # too fresh: its mover may be at it
    assert await moves.finish_stale("a", 5000, now + 10_000, rewrite) == 2
    assert await moves.finish_stale("a", 5000, now + 10_000, rewrite) == 0
    got = (await s.claim(b, LIMITS, QUEUE, 5)).claimed
    assert [c[0] for c in got] == [dead_after_out.id]


async def test_a_job_can_move_back_and_forth_each_hop_once(r: aioredis.Redis, keys: Keys) -> None:
    s, moves, rewrite = Scripts(r), Moves(r, keys), rewrite_for(config())
    j = job()
    await put(s, keys, j)
    for source, target in (("a", "b"), ("b", "a"), ("a", "b")):
        payload = await r.hget(keys.account(source).jobs, j.id)
        assert await moves.move(decode_job(payload), source, target, rewrite)
    assert await moves.moved_to("a", j.id) == "b"  # a cancel at its first home follows it
    got = (await s.claim(keys.account("b"), LIMITS, QUEUE, 5)).claimed
    assert [c[0] for c in got] == [j.id] and decode_job(got[0][1]).moves == 3
    assert await moves.moved_to("b", j.id) is None  # it lives here now


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_moves_racing_claims_lose_and_double_nothing(r: aioredis.Redis, keys: Keys, seed: int) -> None:
    rng = random.Random(seed)
    s, moves, rewrite = Scripts(r), Moves(r, keys), rewrite_for(config())
    jobs = [job(rng.choice("ab")) for _ in range(200)]
    for j in jobs:
        await put(s, keys, j, batch=rng.random() < 0.4)  # both lanes move
    claimed: list[str] = []

    async def claimer(account: str) -> None:
        ak = keys.account(account)
        idle = 0
        while idle < 20:
            got = (await s.claim(ak, LIMITS, QUEUE, rng.randint(1, 4))).claimed
            idle = 0 if got else idle + 1
            for job_id, _, _ in got:
                claimed.append(job_id)
                await s.ack(ak, LIMITS, job_id, (1, 1), "completed")
            await asyncio.sleep(rng.random() / 500)

    async def mover(source: str, target: str, dies: bool) -> None:
        src = keys.account(source)
        for _ in range(30):
            ids = await r.zrange(rng.choice([src.ready, src.bready]), 0, 8)
            for raw in rng.sample(ids, min(3, len(ids))):
                payload = await r.hget(src.jobs, raw)
                if payload is None:
                    continue
                j = decode_job(payload)
                if dies and rng.random() < 0.3:  # step 1 only, then "crash"
                    await moves._out(keys=[src.ready, src.moving, src.bready], args=[j.id, target, j.moves + 1])
                else:
                    await moves.move(j, source, target, rewrite)
            await asyncio.sleep(rng.random() / 500)

    async def recoverer() -> None:
        for _ in range(60):
            now = int(time.time() * 1000)
            for account in "ab":
                await moves.finish_stale(account, 0, now, rewrite)
            await asyncio.sleep(0.01)

    await asyncio.gather(claimer("a"), claimer("b"), claimer("b"), mover("a", "b", False), mover("b", "a", True),
                         mover("a", "b", True), recoverer())
    for account in "ab":  # the last crashed moves, then whatever they put back
        await moves.finish_stale(account, 0, int(time.time() * 1000) + 1, rewrite)
    for account in "ab":
        ak = keys.account(account)
        while got := (await s.claim(ak, LIMITS, QUEUE, 50)).claimed:
            claimed += [c[0] for c in got]
            for c in got:
                await s.ack(ak, LIMITS, c[0], (1, 1), "completed")
    assert sorted(claimed) == sorted(j.id for j in jobs), "a job was lost or claimed twice"
    for account in "ab":
        ak = keys.account(account)
        assert await r.zcard(ak.ready) == 0 and await r.zcard(ak.bready) == 0
        assert await r.hlen(ak.moving) == 0 and await r.hlen(ak.jobs) == 0
