"""worker/quiet.py through EventWriter, against a real Redis: mid-stream writes do not wait for
their replies, and whatever fails on their connection (killed, restarted scripts, a refusal) still
ends with every entry in the record exactly once, in order, or with the error."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from shared.model import TextDelta
from shared.redis import record as stream_record
from shared.redis.client import Role, connect
from shared.redis.record import decode_events
from worker.quiet import CONFIRM_EVERY, QuietAppends, RecordHole
from worker.writer import EventWriter

pytestmark = pytest.mark.anyio


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    redis = connect(redis_url, Role.WORKER, connections=8)
    yield redis
    await redis.aclose()


@pytest.fixture
async def admin(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    redis = aioredis.Redis.from_url(redis_url)
    yield redis
    await redis.aclose()


async def texts(client: aioredis.Redis, key: str) -> list[str]:
    out = []
    for _, payload in await stream_record.read(client, key):
        out.extend(e.text for e in decode_events(payload) if isinstance(e, TextDelta))
    return out


def writer_for(client: aioredis.Redis, key: str, channel: str = "") -> EventWriter:
    return EventWriter(client, key, channel, "job-" + uuid.uuid4().hex[:8], 0, 60)


def in_use(client: aioredis.Redis) -> int:
    return len(client.connection_pool._in_use_connections)  # type: ignore[attr-defined]


async def test_a_mid_stream_write_does_not_wait_for_redis(client: aioredis.Redis, admin: aioredis.Redis) -> None:
    key = f"test-quiet:{uuid.uuid4().hex}"
    writer = writer_for(client, key)
    try:
        await writer.send([TextDelta(0, "a")])  # opens the stream's connection
        await admin.client_pause(10_000, all=False)  # Redis answers no writes for 10 s
        try:
            async with asyncio.timeout(5):  # an awaited write would wait for the pause to end
                await writer.send([TextDelta(0, "b")])
                await writer.send([TextDelta(0, "c")])
        finally:
            await admin.client_unpause()
        await writer.close()  # the last write waits for all of them, and lands after them
        assert await texts(admin, key) == ["a", "b", "c"]
        assert in_use(client) == 0
    finally:
        await admin.delete(key)


async def test_replies_are_read_every_confirm_every_writes(client: aioredis.Redis, admin: aioredis.Redis) -> None:
    key = f"test-quiet:{uuid.uuid4().hex}"
    quiet = QuietAppends(client)
    try:
        for seq in range(1, CONFIRM_EVERY + 3):
            resend = await quiet.send((key, seq, b"[]", 60 if seq == 1 else 0, "", b""))
            assert resend.appends == [] and resend.error is None
        assert len(quiet._unconfirmed) == 2  # the first CONFIRM_EVERY were read back on the way
        assert (await quiet.settle()).appends == []
        assert await admin.xlen(key) == CONFIRM_EVERY + 2
        assert in_use(client) == 0
    finally:
        await admin.delete(key)


async def test_a_killed_connection_loses_nothing(client: aioredis.Redis, admin: aioredis.Redis) -> None:
    key = f"test-quiet:{uuid.uuid4().hex}"
    writer = writer_for(client, key)
    try:
        for text in "abc":
            await writer.send([TextDelta(0, text)])
        await writer.confirm()
        own = [c for c in await admin.client_list() if c["cmd"] == "eval" and c["name"] == ""]
        assert own, "the stream's connection"
        for entry in own:
            await admin.client_kill_filter(_id=entry["id"])
        for text in "defg":  # sent into a closed connection, or refused: all sent again
            await writer.send([TextDelta(0, text)])
        await writer.close()
        assert await texts(admin, key) == list("abcdefg")
        assert in_use(client) == 0
    finally:
        await admin.delete(key)


async def test_scripts_flushed_mid_stream_are_loaded_and_the_tail_sent_again(
        client: aioredis.Redis, admin: aioredis.Redis) -> None:
    key = f"test-quiet:{uuid.uuid4().hex}"
    channel = f"test-quiet-reply:{uuid.uuid4().hex}"
    pubsub = admin.pubsub(ignore_subscribe_messages=True)
    await pubsub.subscribe(channel)
    writer = writer_for(client, key, channel)
    try:
        await writer.send([TextDelta(0, "a")])
        await writer.confirm()
        await admin.script_flush()  # a restart's empty script cache: every later EVALSHA is refused
        for text in "bcd":
            await writer.send([TextDelta(0, text)])
        await writer.close()
        assert await texts(admin, key) == list("abcd")
        seqs: list[int] = []
        for _ in range(10):  # None is the subscribe confirmation, skipped; each call waits up to 5 s
            message = await pubsub.get_message(timeout=5)
            if message is not None:
                seqs.append(int(message["data"].split(b"|", 2)[1]))
            if len(seqs) == 4:
                break
        assert seqs == [1, 2, 3, 4]  # each frame once, in order: a refused write published nothing
    finally:
        await pubsub.aclose()  # type: ignore[no-untyped-call]
        await admin.delete(key)


async def test_a_refusal_followed_by_a_landed_write_is_a_hole(client: aioredis.Redis, admin: aioredis.Redis) -> None:
    wrong, right = f"test-quiet:{uuid.uuid4().hex}", f"test-quiet:{uuid.uuid4().hex}"
    await admin.set(wrong, "not a stream")  # XADD to it: WRONGTYPE, and nothing else would help
    quiet = QuietAppends(client)
    try:
        await quiet.send((wrong, 1, b"[]", 0, "", b""))
        await quiet.send((right, 1, b"[]", 0, "", b""))
        with pytest.raises(RecordHole, match="WRONGTYPE"):
            await quiet.settle()
        assert in_use(client) == 0
    finally:
        await admin.delete(wrong, right)


async def test_a_refused_tail_is_returned_with_its_error(client: aioredis.Redis, admin: aioredis.Redis) -> None:
    key = f"test-quiet:{uuid.uuid4().hex}"
    wrong = f"test-quiet:{uuid.uuid4().hex}"
    await admin.set(wrong, "not a stream")
    quiet = QuietAppends(client)
    try:
        await quiet.send((key, 1, b"[]", 0, "", b""))
        await quiet.send((wrong, 2, b"[]", 0, "", b""))
        resend = await quiet.settle()
        assert [append[1] for append in resend.appends] == [2]
        assert resend.error is not None and "WRONGTYPE" in str(resend.error)
        writer = writer_for(client, key)
        with pytest.raises(type(resend.error)):  # not worth another try: the writer raises it
            await writer._resend(resend)
    finally:
        await admin.delete(key, wrong)


async def test_a_job_cut_off_gives_its_connection_back(client: aioredis.Redis, admin: aioredis.Redis) -> None:
    key = f"test-quiet:{uuid.uuid4().hex}"
    writer = writer_for(client, key)
    try:
        await writer.send([TextDelta(0, "a")])
        assert in_use(client) == 1  # held for the stream
        await writer.release()
        assert in_use(client) == 0
        assert await client.ping()  # the pool is usable
    finally:
        await admin.delete(key)


async def test_past_the_held_limit_writes_are_awaited(client: aioredis.Redis, admin: aioredis.Redis) -> None:
    first, second = f"test-quiet:{uuid.uuid4().hex}", f"test-quiet:{uuid.uuid4().hex}"
    holder, over = QuietAppends(client, held_limit=1), QuietAppends(client, held_limit=1)
    try:
        assert (await holder.send((first, 1, b"[]", 0, "", b""))).appends == []  # holds the one connection
        resend = await over.send((second, 1, b"[]", 0, "", b""))
        assert [append[1] for append in resend.appends] == [1] and resend.error is None  # the ordinary way
        assert in_use(client) == 1
        assert (await holder.settle()).appends == []
        assert in_use(client) == 0
        assert (await over.send((second, 1, b"[]", 0, "", b""))).appends == []  # room again
        assert (await over.settle()).appends == []
        assert await admin.xlen(first) == 1 and await admin.xlen(second) == 1
    finally:
        await admin.delete(first, second)


async def test_an_empty_script_cache_refilled_by_another_writer_leaves_no_hole(
        client: aioredis.Redis, admin: aioredis.Redis) -> None:
    # Found by the stream bench on a fresh Redis: one stream's unawaited write met the empty
    # script cache, another stream's awaited write loaded the script, and the first stream's next
    # write landed. As EVALSHAs that was a hole in the record; quiet writes are EVALs.
    key, other = f"test-quiet:{uuid.uuid4().hex}", f"test-quiet:{uuid.uuid4().hex}"
    writer = writer_for(client, key)
    try:
        await writer.send([TextDelta(0, "a")])
        await writer.confirm()
        await admin.script_flush()
        await writer.send([TextDelta(0, "b")])
        await stream_record.append_now(admin, other, 1, b"[]", 60, "", b"")  # loads the script again
        await writer.send([TextDelta(0, "c")])
        await writer.close()
        assert await texts(admin, key) == list("abc")
    finally:
        await admin.delete(key, other)
