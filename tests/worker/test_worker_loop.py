"""One worker, in-process, on the private Redis and the real mock provider: the claim -> call ->
write -> acknowledge cycle, and each way a job can end other than well."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractContextManager
from typing import Any

import httpx
import msgspec
import pytest
import redis.asyncio as aioredis

from shared.config import Config, QueueSettings, parse_config
from shared.jobs import Job, encode_job
from shared.mock import MockSettings
from shared.model import ChatRequest, Complete, Message, MessageStart, MessageStop, StreamError, Text
from shared.redis import record, reply
from shared.redis.client import Role, connect
from shared.redis.dlq import DeadLetters
from shared.redis.embedded import EmbeddedRedis, free_port
from shared.redis.keys import Keys
from shared.redis.scripts import LimitArgs, Scripts
from worker.loop import Worker
from worker.providers import provider_for
from worker.resume import read_record
from worker.upstream import make_transport

pytestmark = pytest.mark.anyio
Live = Callable[[MockSettings], AbstractContextManager[str]]


def config_for(redis_url: str, base_url: str, key: str = "sk-up", queue: str = "{}") -> Config:
    return parse_config(f"""
redis_url: {redis_url}
key_prefix: t{uuid.uuid4().hex[:10]}
accounts: [{{name: acct, provider: mock, base_url: "{base_url}/v1", api_key: {key}, limits: {{concurrency: 4}}}}]
models: [{{name: m, route: [{{account: acct, model: mock-small}}]}}]
queue: {queue}
""", env={})


def new_job(stream: bool, reply_to: str = "", deadline_ms: int | None = None) -> Job:
    now = int(time.time() * 1000)
    req = ChatRequest(model="m", messages=[Message("user", [Text("hello")])], stream=stream, max_tokens=8)
    return Job(secrets.token_hex(12), "acct", "mock-small", req, reply_to, now,
               deadline_ms if deadline_ms is not None else now + 60_000, 5, 8)


async def eventually(check: Callable[[], Any], what: str, within: float = 10.0) -> Any:
    """Polls an async condition the worker will make true, failing loudly at the deadline."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        value = await check()
        if value:
            return value
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


class Harness:
    def __init__(self, config: Config, client: aioredis.Redis) -> None:
        self.config = config
        self.redis = client
        self.keys = Keys(config.key_prefix)
        self.acct = self.keys.account("acct")
        self.scripts = Scripts(client)

    async def enqueue(self, job: Job, payload: bytes | None = None) -> None:
        await self.scripts.enqueue(self.acct, job.id, payload or encode_job(job), (5, 8), 0, 100)

    async def finished(self, job_id: str) -> list[Any]:
        got = await read_record(self.redis, self.keys.out(job_id))
        return got.events if got.finished else []

    async def stats(self) -> dict[str, int]:
        raw = await self.redis.hgetall(self.acct.stats)  # type: ignore[misc]
        return {k.decode(): int(v) for k, v in raw.items()}


@contextlib.asynccontextmanager
async def running(config: Config) -> AsyncIterator[Harness]:
    client = connect(config.redis_url, Role.WORKER, connections=4)
    account = config.account("acct")
    http = make_transport(account)
    worker = Worker(config, account, client, provider_for(account), http)
    harness = Harness(config, client)
    task = asyncio.create_task(worker.run())
    try:
        yield harness
    finally:
        worker.stop()
        await asyncio.wait_for(task, 10)
        keys = [k async for k in client.scan_iter(match=f"{config.key_prefix}:*")]
        if keys:
            await client.delete(*keys)
        await http.aclose()
        await client.aclose()


async def counted(h: Harness, name: str) -> dict[str, int] | None:
    """The account's counters once `name` has been counted (acks land a moment after the record)."""
    stats = await h.stats()
    return stats if stats.get(name) else None


def upstream_requests(base: str) -> int:
    return int(httpx.get(f"{base}/_stats", timeout=5).json()["requests"])


async def test_a_stream_is_written_to_the_record_and_published_entry_for_entry(redis_url: str,
                                                                               live_mock: Live) -> None:
    with live_mock(MockSettings(output_tokens=6)) as base:
        config = config_for(redis_url, base)
        async with running(config) as h:
            channel = h.keys.reply_channel("api-test")
            pubsub = h.redis.pubsub(ignore_subscribe_messages=True)
            await pubsub.subscribe(channel)
            job = new_job(stream=True, reply_to=channel)
            await h.enqueue(job)
            events = await eventually(lambda: h.finished(job.id), "the stream's end")
            entries = await record.read(h.redis, h.keys.out(job.id))
            frames = []
            while len(frames) < len(entries):
                message = await pubsub.get_message(timeout=5)
                if message is not None:
                    frames.append(reply.decode(message["data"]))
            await pubsub.aclose()  # type: ignore[no-untyped-call]
            stats = await eventually(lambda: counted(h, "completed"), "the ack")
            inflight = await h.redis.zcard(h.acct.inflight)
    assert isinstance(events[0], MessageStart) and events[0].timing is not None
    assert isinstance(events[-1], MessageStop)
    assert frames == [(job.id.encode(), entry) for entry in entries]  # the live tap is the record, exactly
    assert stats["completed"] == 1 and inflight == 0


async def test_a_whole_answer_is_one_complete_event_with_its_timing(redis_url: str, live_mock: Live) -> None:
    with live_mock(MockSettings(output_tokens=3)) as base:
        async with running(config_for(redis_url, base)) as h:
            job = new_job(stream=False)
            await h.enqueue(job)
            events = await eventually(lambda: h.finished(job.id), "the answer")
    assert len(events) == 1 and isinstance(events[0], Complete)
    timing = events[0].timing
    assert timing is not None and timing.upstream_ms > 0 and timing.done_at > 0
    assert events[0].response.usage.output_tokens == 3


async def test_a_job_past_its_deadline_is_never_sent_upstream(redis_url: str, live_mock: Live) -> None:
    with live_mock(MockSettings()) as base:
        async with running(config_for(redis_url, base)) as h:
            late = new_job(stream=False, deadline_ms=int(time.time() * 1000) - 1)
            fresh = new_job(stream=False)
            await h.enqueue(late)
            await h.enqueue(fresh)
            await eventually(lambda: h.finished(fresh.id), "the job behind it")
            stats = await h.stats()
            late_record = await read_record(h.redis, h.keys.out(late.id))
        assert upstream_requests(base) == 1
    # its client (if still waiting) is answered, never left in silence
    assert stats["expired"] == 1 and [type(e) for e in late_record.events] == [StreamError]
    assert late_record.events[0].error.kind == "rate_limited"


async def test_a_batch_line_past_its_deadline_is_left_to_its_coordinator(redis_url: str, live_mock: Live) -> None:
    # a batch line's deadline is its batch's expiry: the coordinator ends it as expired when it
    # finds no answer, so the worker must not write a 429 that would stand as the line's result
    with live_mock(MockSettings()) as base:
        async with running(config_for(redis_url, base)) as h:
            late = msgspec.structs.replace(new_job(stream=False, deadline_ms=int(time.time() * 1000) - 1),
                                           priority="batch")
            await h.scripts.enqueue(h.acct, late.id, encode_job(late), (5, 8), 1, 100)
            stats = await eventually(lambda: counted(h, "expired"), "the expiry")
            late_record = await read_record(h.redis, h.keys.out(late.id))
        assert upstream_requests(base) == 0
    assert stats["expired"] == 1 and late_record.events == []


async def test_a_refused_key_fails_the_job_and_cools_the_account_down(redis_url: str, live_mock: Live) -> None:
    with live_mock(MockSettings(api_key="sk-right")) as base:
        async with running(config_for(redis_url, base, key="sk-wrong")) as h:
            job = new_job(stream=True)
            await h.enqueue(job)
            events = await eventually(lambda: h.finished(job.id), "the failure")
            blocked = float(await h.redis.hget(h.acct.rl, "blocked") or 0)  # type: ignore[misc]
            stats = await eventually(lambda: counted(h, "failed"), "the ack")
    assert isinstance(events[-1], StreamError) and events[-1].error.kind == "upstream_auth"
    assert blocked - time.time() * 1000 > 250_000  # held back for minutes, not retried at once
    assert stats["failed"] == 1


async def test_an_unreadable_job_is_dropped_and_the_next_one_runs(redis_url: str, live_mock: Live) -> None:
    with live_mock(MockSettings()) as base:
        async with running(config_for(redis_url, base)) as h:
            broken, good = new_job(stream=False), new_job(stream=False)
            await h.enqueue(broken, payload=b"{not a job")
            await h.enqueue(good)
            await eventually(lambda: h.finished(good.id), "the good job")
            stats = await eventually(lambda: counted(h, "completed"), "the good job's ack")
    assert stats["failed"] == 1 and stats["completed"] == 1


async def lease_lost(h: Harness, job: Job) -> None:
    """A worker claimed `job` and died holding it: its 1 ms lease runs out unrenewed."""
    await h.enqueue(job)
    dying = await h.scripts.claim(h.acct, LimitArgs.of(h.config.account("acct")), QueueSettings(lease_seconds=0.001), 1)
    assert [c[0] for c in dying.claimed] == [job.id]
    await eventually(lambda: h.redis.zcount(h.acct.inflight, "-inf", time.time() * 1000 - 5), "the lease to lapse")


async def test_a_rerun_of_an_answer_already_recorded_is_only_acknowledged(redis_url: str,
                                                                          live_mock: Live) -> None:
    with live_mock(MockSettings()) as base:
        config = config_for(redis_url, base)
        client = connect(redis_url, Role.TOOL)
        h = Harness(config, client)
        job = new_job(stream=True)
        await lease_lost(h, job)
        pipe = client.pipeline(transaction=False)  # the dead worker had written the whole answer
        record.append(pipe, h.keys.out(job.id), 1, record.encode_events([MessageStart(id="m", model="x"),
                                                                          MessageStop("end_turn")]))
        await pipe.execute()
        await client.aclose()
        async with running(config) as h:
            stats = await eventually(lambda: counted(h, "completed"), "the ack")
            entries = await record.read(h.redis, h.keys.out(job.id))
        assert upstream_requests(base) == 0
    assert stats["completed"] == 1 and stats["reclaimed"] == 1 and len(entries) == 1


async def test_a_job_whose_workers_keep_dying_is_dead_lettered_with_a_503(redis_url: str,
                                                                          live_mock: Live) -> None:
    with live_mock(MockSettings()) as base:
        config = config_for(redis_url, base, queue="{max_attempts: 1}")
        client = connect(redis_url, Role.TOOL)
        h = Harness(config, client)
        job = new_job(stream=True)
        await lease_lost(h, job)
        await client.aclose()
        async with running(config) as h:
            events = await eventually(lambda: h.finished(job.id), "the dead letter's error")
            dead = await h.redis.zcard(h.acct.dlq)
        assert upstream_requests(base) == 0
    assert isinstance(events[-1], StreamError) and events[-1].error.status == 503 and dead == 1


async def test_a_provider_that_keeps_failing_dead_letters_the_job_with_its_status(redis_url: str,
                                                                                   live_mock: Live) -> None:
    with live_mock(MockSettings()) as base:
        # two retries (not the default three), with short backoffs: the test stays quick
        config = config_for(redis_url, base, queue="{upstream_retries: 2, retry_base_seconds: 0.01}")
        config.accounts[0].headers = {"x-mock-fail": "503"}  # the mock answers every call with a 503
        async with running(config) as h:
            job = new_job(stream=True)
            await h.enqueue(job)
            events = await eventually(lambda: h.finished(job.id), "the failure")
            letters = await eventually(lambda: DeadLetters(h.redis, h.keys).list("acct"), "the dead letter")
            still_there = await h.redis.hget(h.acct.jobs, job.id)  # type: ignore[misc]
        assert upstream_requests(base) == 3  # the first call and its two retries
    assert isinstance(events[-1], StreamError) and events[-1].error.kind == "upstream_unavailable"
    assert [(d.job_id, d.status, d.kind, d.attempts) for d in letters] == [(job.id, 503, "upstream_unavailable", 3)]
    assert "upstream failed after 3 attempts" in letters[0].reason
    assert still_there is not None  # kept for `sluice dlq replay`


async def test_a_worker_started_before_redis_waits_for_it_and_then_serves(live_mock: Live) -> None:
    port = free_port()
    with live_mock(MockSettings()) as base:
        config = config_for(f"redis://127.0.0.1:{port}/0", base)
        client = connect(config.redis_url, Role.WORKER, connections=4)
        account = config.account("acct")
        http = make_transport(account)
        worker = Worker(config, account, client, provider_for(account), http)
        task = asyncio.create_task(worker.run())
        server = None
        try:
            await asyncio.sleep(0.5)  # let it fail to reach Redis a few times (the fault, not a sync)
            assert not task.done(), "the worker gave up instead of waiting for Redis"
            server = await asyncio.to_thread(EmbeddedRedis, port)
            h = Harness(config, client)
            job = new_job(stream=False)
            await h.enqueue(job)
            events = await eventually(lambda: h.finished(job.id), "the job, once Redis is up", within=20)
            assert isinstance(events[-1], Complete)
        finally:
            worker.stop()
            await asyncio.wait_for(task, 10)
            await http.aclose()
            await client.aclose()
            if server is not None:
                server.stop()
