"""EventWriter against a real Redis: what goes out at once and what waits for the coalescing window."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from shared.model import MessageStart, StreamEvent, TextDelta
from shared.redis import record as stream_record
from shared.redis.client import Role, connect
from shared.redis.record import decode_events
from worker.writer import EventWriter

pytestmark = pytest.mark.anyio

# Long enough that a write held by the window could never be mistaken for one sent at once.
WINDOW_MS = 60_000


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    redis = connect(redis_url, Role.TOOL)
    yield redis
    await redis.aclose()


async def record(client: aioredis.Redis, key: str) -> list[list[StreamEvent]]:
    return [decode_events(events) for _, events in await stream_record.read(client, key)]


async def flushed(writer: EventWriter) -> None:
    """Waits for the writer's scheduled flush, if any (the task it started, not a clock); one
    held for the coalescing window fails the test instead of passing after a minute."""
    pending = writer._pending
    if pending is not None:
        await asyncio.wait_for(pending, 5)


async def test_first_token_is_not_held_behind_a_start_event(client: aioredis.Redis) -> None:
    # Providers send the role / message-start chunk a moment before the first token. Had that
    # write opened the coalescing window, the first token would wait the whole window.
    key = f"test-writer:{uuid.uuid4().hex}"
    writer = EventWriter(client, key, "", "job", WINDOW_MS, 60)
    try:
        await writer.send([MessageStart(id="m1", model="x")])
        await writer.send([TextDelta(index=0, text="Hel")])
        await flushed(writer)
        await writer.confirm()  # mid-stream writes are sent, not awaited: wait for them to land
        assert [len(events) for events in await record(client, key)] == [1, 1]
        # Once a token is out, the next deltas share one write after the window ...
        await writer.send([TextDelta(index=0, text="lo")])
        await writer.send([TextDelta(index=0, text="!")])
        assert writer._pending is not None and not writer._pending.done()
        assert len(await record(client, key)) == 2
        # ... or at close, whichever is first.
        await writer.close()
        events = await record(client, key)
        assert [len(batch) for batch in events] == [1, 1, 2]
        assert [e.text for e in events[2] if isinstance(e, TextDelta)] == ["lo", "!"]
    finally:
        await client.delete(key)


async def test_each_write_is_recorded_published_and_survives_a_script_flush(client: aioredis.Redis) -> None:
    # A write is one EVALSHA (record entry, expiry on the first, reply frame). Redis that lost
    # its scripts (a restart) answers NOSCRIPT having run nothing: the writer loads the script
    # and the entry is written once.
    key = f"test-writer:{uuid.uuid4().hex}"
    channel = f"test-writer-reply:{uuid.uuid4().hex}"
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    await pubsub.subscribe(channel)
    writer = EventWriter(client, key, channel, "job1", 0, 60)
    try:
        await writer.send([MessageStart(id="m1", model="x")])
        await client.script_flush()
        await writer.send([TextDelta(index=0, text="Hi")])  # NOSCRIPT, found when its reply is read
        await writer.confirm()
        assert [len(events) for events in await record(client, key)] == [1, 1]
        assert 0 < await client.ttl(key) <= 60  # set by the first write
        frames = []
        for _ in range(10):  # None is the subscribe confirmation, skipped; each call waits up to 5 s
            message = await pubsub.get_message(timeout=5)
            if message is not None:
                frames.append(message["data"])
            if len(frames) == 2:
                break
        assert [frame.split(b"|", 2)[:2] for frame in frames] == [[b"job1", b"1"], [b"job1", b"2"]]
    finally:
        await pubsub.aclose()  # type: ignore[no-untyped-call]
        await client.delete(key)
