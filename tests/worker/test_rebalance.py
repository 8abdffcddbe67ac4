"""The rebalancer's policy, on the real Redis: it pulls only from a sibling that cannot serve
(blocked for longer than a limiter pause, or without a live worker), only models it serves, and
only while it is itself a good home."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from shared.config import Account, Config, Limits, Model, RouteTarget
from shared.jobs import Job, decode_job, encode_job
from shared.model import ChatRequest, Message, Text
from shared.redis.keys import Keys
from shared.redis.scripts import Scripts
from worker.rebalance import Rebalancer, siblings_of

pytestmark = pytest.mark.anyio


def config(prefix: str) -> Config:
    accounts = [Account(name=n, provider="mock", limits=Limits(concurrency=4)) for n in ("a", "b", "c")]
    models = [Model(name="m", route=[RouteTarget("a", "up-a"), RouteTarget("b", "up-b")]),
              Model(name="only-a", route=[RouteTarget("a", "up-a")]),
              Model(name="other", route=[RouteTarget("c", "up-c")])]
    return Config(key_prefix=prefix, accounts=accounts, models=models)


def job(model: str = "m") -> Job:
    now = int(time.time() * 1000)
    req = ChatRequest(model=model, messages=[Message("user", [Text("hi")])], max_tokens=8)
    return Job(id=uuid.uuid4().hex[:12], account="a", upstream_model="up-a", request=req, reply_to="",
               enqueued_ms=now, deadline_ms=now + 60_000, input_estimate=3, output_reserve=8)


@pytest.fixture
async def setup(redis_url: str) -> AsyncIterator[tuple[aioredis.Redis, Config, Keys]]:
    client = aioredis.Redis.from_url(redis_url)
    cfg = config(f"t{uuid.uuid4().hex[:8]}")
    keys = Keys(cfg.key_prefix)
    yield client, cfg, keys
    found = [k async for k in client.scan_iter(match=f"{cfg.key_prefix}:*")]
    if found:
        await client.delete(*found)
    await client.aclose()


async def alive(client: aioredis.Redis, keys: Keys, account: str) -> None:
    await client.zadd(keys.account(account).workers, {"w1": time.time() * 1000})


def puller_of(cfg: Config, client: aioredis.Redis, dead: list[tuple[str, str]] | None = None) -> Rebalancer:
    """Account b's rebalancer; the jobs it dead-letters for a sibling are noted in `dead`."""

    async def on_dead(account: str, job_id: str, payload: bytes) -> None:
        assert decode_job(payload).id == job_id
        (dead if dead is not None else []).append((account, job_id))

    return Rebalancer(cfg, cfg.account("b"), client, on_dead)


async def test_siblings_are_the_accounts_sharing_a_model() -> None:
    cfg = config("x")
    assert siblings_of(cfg, "b") == ["a"] and siblings_of(cfg, "a") == ["b"] and siblings_of(cfg, "c") == []


async def test_it_pulls_only_from_a_stranded_sibling_and_only_what_it_serves(
        setup: tuple[aioredis.Redis, Config, Keys]) -> None:
    client, cfg, keys = setup
    s = Scripts(client)
    a = keys.account("a")
    jobs = [job(), job(), job("only-a")]
    for j in jobs:
        await s.enqueue(a, j.id, encode_job(j), (3, 8), 0, 100)
    await alive(client, keys, "a")
    await alive(client, keys, "b")
    puller = puller_of(cfg, client)
    assert await puller.tick() == 0  # a is healthy: its queue stays where routing put it
    await client.hset(a.rl, "blocked", str(time.time() * 1000 + 1000))
    assert await puller.tick() == 0  # a limiter pause, not worth a move
    await client.hset(a.rl, "blocked", str(time.time() * 1000 + 300_000))  # a refused key's cooldown
    assert await puller.tick() == 2  # the two jobs of model m; only-a cannot run on b
    assert await client.zrange(a.ready, 0, -1) == [jobs[2].id.encode()]
    moved = [decode_job(p) for p in await client.hvals(keys.account("b").jobs)]
    assert sorted(j.id for j in moved) == sorted(j.id for j in jobs[:2])
    assert {(j.account, j.upstream_model) for j in moved} == {("b", "up-b")}


async def test_an_account_without_a_live_worker_is_stranded(setup: tuple[aioredis.Redis, Config, Keys]) -> None:
    client, cfg, keys = setup
    s = Scripts(client)
    j = job()
    await s.enqueue(keys.account("a"), j.id, encode_job(j), (3, 8), 0, 100)
    await client.zadd(keys.account("a").workers, {"gone": time.time() * 1000 - 120_000})  # last beat long ago
    assert await puller_of(cfg, client).tick() == 1


async def test_a_blocked_or_busy_worker_pulls_nothing(setup: tuple[aioredis.Redis, Config, Keys]) -> None:
    client, cfg, keys = setup
    s = Scripts(client)
    for _ in range(2):
        j = job()
        await s.enqueue(keys.account("a"), j.id, encode_job(j), (3, 8), 0, 100)
    puller = puller_of(cfg, client)
    await client.hset(keys.account("b").rl, "blocked", str(time.time() * 1000 + 60_000))
    assert await puller.tick() == 0  # it cannot serve either
    await client.hdel(keys.account("b").rl, "blocked")
    for _ in range(4):  # a queue of its own as deep as its concurrency
        j = job()
        await s.enqueue(keys.account("b"), j.id, encode_job(j), (3, 8), 0, 100)
    assert await puller.tick() == 0


async def test_batch_lines_are_pulled_too_interactive_first_each_onto_its_own_lane(
        setup: tuple[aioredis.Redis, Config, Keys]) -> None:
    client, cfg, keys = setup
    s = Scripts(client)
    a, b = keys.account("a"), keys.account("b")
    lines = [job() for _ in range(3)]
    chats = [job() for _ in range(2)]
    for j in lines:
        await s.enqueue(a, j.id, encode_job(j), (3, 8), 1, 100)
    for j in chats:
        await s.enqueue(a, j.id, encode_job(j), (3, 8), 0, 100)
    await client.zadd(a.workers, {"gone": time.time() * 1000 - 120_000})  # a's workers all died
    assert await puller_of(cfg, client).tick() == 5
    assert sorted(await client.zrange(b.ready, 0, -1)) == sorted(j.id.encode() for j in chats)
    assert sorted(await client.zrange(b.bready, 0, -1)) == sorted(j.id.encode() for j in lines)
    assert await client.zcard(a.ready) == 0 and await client.zcard(a.bready) == 0


async def test_a_batch_lane_of_its_own_counts_as_work_of_its_own(setup: tuple[aioredis.Redis, Config, Keys]) -> None:
    client, cfg, keys = setup
    s = Scripts(client)
    j = job()
    await s.enqueue(keys.account("a"), j.id, encode_job(j), (3, 8), 0, 100)
    await client.zadd(keys.account("a").workers, {"gone": time.time() * 1000 - 120_000})
    for _ in range(4):  # b's batch lane is as deep as its concurrency
        mine = job()
        await s.enqueue(keys.account("b"), mine.id, encode_job(mine), (3, 8), 1, 100)
    assert await puller_of(cfg, client).tick() == 0


async def test_jobs_running_on_a_dead_sibling_come_back_when_their_lease_runs_out(
        setup: tuple[aioredis.Redis, Config, Keys]) -> None:
    """Only an account's own workers re-queue its expired leases (claim.lua); when they are all
    dead, the puller does it for them, then pulls the jobs over; one past its attempts is
    dead-lettered and handed to `on_dead`, so its client gets an answer."""
    client, cfg, keys = setup
    s = Scripts(client)
    a = keys.account("a")
    running, doomed = job(), job()
    for j in (running, doomed):
        await s.enqueue(a, j.id, encode_job(j), (3, 8), 0, 100)
    await client.zrem(a.ready, running.id, doomed.id)  # claimed by a's worker, which then died:
    await client.zadd(a.inflight, {running.id: 1, doomed.id: 1})  # leases long expired
    await client.hset(a.meta, f"{doomed.id}:a", cfg.queue.max_attempts - 1)
    await client.zadd(a.workers, {"gone": time.time() * 1000 - 120_000})
    dead: list[tuple[str, str]] = []
    assert await puller_of(cfg, client, dead).tick() == 1
    assert await client.zrange(keys.account("b").ready, 0, -1) == [running.id.encode()]
    assert await client.zcard(a.inflight) == 0
    assert dead == [("a", doomed.id)]
    assert await client.zrange(a.dlq, 0, -1) == [doomed.id.encode()]


async def test_a_live_siblings_running_jobs_are_left_to_it(setup: tuple[aioredis.Redis, Config, Keys]) -> None:
    client, cfg, keys = setup
    s = Scripts(client)
    a = keys.account("a")
    j = job()
    await s.enqueue(a, j.id, encode_job(j), (3, 8), 0, 100)
    await client.zrem(a.ready, j.id)
    await client.zadd(a.inflight, {j.id: 1})  # expired, but a's own worker is alive to re-queue it
    await alive(client, keys, "a")
    assert await puller_of(cfg, client).tick() == 0
    assert await client.zrange(a.inflight, 0, -1) == [j.id.encode()]
