"""The stream record codec: events and entry ids round-trip, and what the writer appends is what
every reader reads back, from a real Redis."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import get_args

import pytest
import redis.asyncio as aioredis
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.model import (
    BlockStart,
    BlockStop,
    ChatResponse,
    Complete,
    ErrorInfo,
    FinishReason,
    MessageStart,
    MessageStop,
    ReasoningDelta,
    StreamError,
    StreamEvent,
    Text,
    TextDelta,
    Timing,
    ToolArgsDelta,
    Usage,
    UsageEvent,
)
from shared.redis import record
from shared.redis.client import Role, connect
from shared.redis.record import ReplayInfo

finite = st.floats(min_value=0, max_value=1e12, allow_nan=False)
small = st.integers(0, 1_000)
text = st.text(max_size=40)
usage = st.builds(Usage, input_tokens=small, output_tokens=small)
timing = st.builds(Timing, queue_ms=finite, dispatch_ms=finite, upstream_ms=finite, done_at=finite)
finish = st.sampled_from(get_args(FinishReason))

events: st.SearchStrategy[StreamEvent] = st.one_of(
    st.builds(MessageStart, id=text, model=text, input_tokens=small, timing=st.none() | timing),
    st.builds(BlockStart, index=small, kind=st.sampled_from(["text", "tool_call", "reasoning"]),
              id=st.none() | text, name=st.none() | text),
    st.builds(TextDelta, index=small, text=text),
    st.builds(ToolArgsDelta, index=small, json=text),
    st.builds(ReasoningDelta, index=small, text=text, signature=st.none() | text),
    st.builds(BlockStop, index=small),
    st.builds(UsageEvent, usage=usage),
    st.builds(MessageStop, finish_reason=finish, stop_sequence=st.none() | text),
    st.builds(StreamError, error=st.builds(ErrorInfo, kind=text, message=text, status=st.integers(400, 599),
                                           retry_after=st.none() | finite, param=st.none() | text)),
    st.builds(Complete, response=st.builds(ChatResponse, id=text, model=text,
                                           content=st.lists(st.builds(Text, text=text), max_size=3),
                                           finish_reason=finish, usage=usage),
              timing=st.none() | timing),
)
batches = st.lists(events, min_size=1, max_size=6)


@given(batches)
def test_events_round_trip(batch: list[StreamEvent]) -> None:
    assert record.decode_events(record.encode_events(batch)) == batch


@given(st.integers(1, 2**63 - 1))
def test_entry_ids_round_trip(seq: int) -> None:
    assert record.seq_of(record.entry_id(seq)) == seq
    assert record.seq_of(record.entry_id(seq).encode()) == seq


@pytest.mark.parametrize("raw", [b"1700000000000-0", b"0", b"x-1", b"0-"])
def test_ids_redis_chose_are_not_record_ids(raw: bytes) -> None:
    with pytest.raises(ValueError):
        record.seq_of(raw)


@given(st.text(max_size=20), st.text(max_size=20), st.text(max_size=20), st.booleans())
def test_replay_info_round_trips_through_its_hash_fields(dialect: str, model: str, client: str, usage: bool) -> None:
    info = ReplayInfo(dialect, model, client, usage)
    as_stored = {k.encode(): v.encode() for k, v in info.fields().items()}
    assert ReplayInfo.decode(as_stored) == info


def test_a_missing_or_partial_replay_hash_reads_as_none() -> None:
    assert ReplayInfo.decode({}) is None
    assert ReplayInfo.decode({b"dialect": b"gemini", b"model": b"m"}) is None


# --- against a real Redis -------------------------------------------------------------------------



@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    c = connect(redis_url, Role.TOOL)
    yield c
    await c.aclose()


@pytest.fixture
def key() -> str:
    return f"t{uuid.uuid4().hex[:10]}:out:{{job}}"


async def append_all(client: aioredis.Redis, key: str, written: list[list[StreamEvent]]) -> None:
    for seq, batch in enumerate(written, start=1):
        pipe = client.pipeline(transaction=False)
        record.append(pipe, key, seq, record.encode_events(batch))
        await pipe.execute()


@pytest.mark.anyio
@settings(max_examples=25, deadline=None)
@given(written=st.lists(batches, min_size=1, max_size=5), cut=st.integers(0, 6))
async def test_what_is_appended_is_what_every_reader_reads(redis_url: str, written: list[list[StreamEvent]],
                                                           cut: int) -> None:
    client = connect(redis_url, Role.TOOL)
    key = f"t{uuid.uuid4().hex[:10]}:out:{{job}}"
    try:
        await append_all(client, key, written)
        everything = await record.read(client, key)
        assert [seq for seq, _ in everything] == list(range(1, len(written) + 1))
        assert [record.decode_events(events) for _, events in everything] == written
        assert await record.read(client, key, cut + 1) == everything[cut:]
        assert await record.read_after(client, key, cut, 100, 10) == everything[cut:]
    finally:
        await client.delete(key)
        await client.aclose()


@pytest.mark.anyio
async def test_a_position_can_be_written_only_once(client: aioredis.Redis, key: str) -> None:
    # Two workers running one job (a lease lost mid-stream) must not both write entry 1.
    await append_all(client, key, [[TextDelta(0, "first")]])
    pipe = client.pipeline(transaction=False)
    record.append(pipe, key, 1, record.encode_events([TextDelta(0, "second")]))
    with pytest.raises(aioredis.ResponseError):
        await pipe.execute()
    assert [record.decode_events(events) for _, events in await record.read(client, key)] == [[TextDelta(0, "first")]]
    await client.delete(key)


@pytest.mark.anyio
async def test_read_after_waits_for_the_next_entry_and_reports_silence(client: aioredis.Redis, key: str) -> None:
    assert await record.read_after(client, key, 0, 10, 20) == []
    await append_all(client, key, [[TextDelta(0, "a")], [TextDelta(0, "b")]])
    got = await record.read_after(client, key, 1, 10, 20)
    assert got == [(2, record.encode_events([TextDelta(0, "b")]))]
    await client.delete(key)


@pytest.mark.anyio
async def test_replay_info_is_written_with_the_records_expiry_and_read_back(client: aioredis.Redis, key: str) -> None:
    info = ReplayInfo("anthropic_messages", "claude-x", "tester", include_usage=True)
    pipe = client.pipeline(transaction=False)
    record.write_replay_info(pipe, key, info, 30)
    await pipe.execute()
    try:
        assert await record.read_replay_info(client, key) == info
        assert 0 < await client.ttl(key) <= 30
        assert await record.read_replay_info(client, key + "-missing") is None
    finally:
        await client.delete(key)
