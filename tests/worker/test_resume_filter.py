"""A re-run job continues its record instead of repeating it: what the record holds is dropped
from the new attempt's output, event by event and character by character."""

from __future__ import annotations

import secrets

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.model import (
    BlockStart,
    BlockStop,
    MessageStart,
    MessageStop,
    ReasoningDelta,
    StreamEvent,
    TextDelta,
    ToolArgsDelta,
    Usage,
    UsageEvent,
)
from shared.redis.client import Role, connect
from worker.resume import ResumeFilter, read_record
from worker.writer import EventWriter


def answer(text: str, args: str, thought: str) -> list[StreamEvent]:
    """One whole streamed answer: a reasoning block, a text block and a tool call's arguments,
    one character per delta (how a provider regenerates it does not matter to the filter)."""
    return [
        MessageStart(id="m", model="x"),
        BlockStart(0, "reasoning"), *(ReasoningDelta(0, c) for c in thought), ReasoningDelta(0, "", "sig"),
        BlockStop(0),
        BlockStart(1, "text"), *(TextDelta(1, c) for c in text), BlockStop(1),
        BlockStart(2, "tool_call", id="c1", name="f"), *(ToolArgsDelta(2, c) for c in args), BlockStop(2),
        UsageEvent(Usage(3, 4)), MessageStop("end_turn"),
    ]


def joined(events: list[StreamEvent]) -> tuple[str, str, str]:
    return ("".join(e.text for e in events if isinstance(e, ReasoningDelta)),
            "".join(e.text for e in events if isinstance(e, TextDelta)),
            "".join(e.json for e in events if isinstance(e, ToolArgsDelta)))


@given(st.text(max_size=12), st.text(max_size=12), st.text(max_size=12), st.integers(0, 60), st.integers(1, 5))
def test_the_record_plus_the_filtered_rerun_is_one_whole_answer(text: str, args: str, thought: str, cut: int,
                                                                 chunk: int) -> None:
    whole = answer(text, args, thought)
    sent = whole[:cut]  # the first attempt died after this much
    rerun = ResumeFilter(sent)
    tail: list[StreamEvent] = []
    for i in range(0, len(whole), chunk):  # the new attempt's events, in batches
        tail += rerun.filter(whole[i:i + chunk])
    together = sent + tail
    assert joined(together) == (thought, text, args)
    starts = [e for e in together if isinstance(e, MessageStart | BlockStart | BlockStop)]
    assert len(starts) == len({(type(e), getattr(e, "index", None)) for e in starts})  # none repeated
    assert isinstance(together[-1], MessageStop)
    assert [e.signature for e in together if isinstance(e, ReasoningDelta) and e.signature] == ["sig"]


def test_a_first_attempt_passes_everything_through() -> None:
    events = answer("hi", "{}", "")
    assert ResumeFilter().filter(events) is events


def test_a_delta_split_differently_is_cut_mid_way() -> None:
    rerun = ResumeFilter([MessageStart(id="m", model="x"), BlockStart(0, "text"), TextDelta(0, "Hel")])
    assert rerun.filter([MessageStart(id="m", model="x"), BlockStart(0, "text"), TextDelta(0, "He"),
                         TextDelta(0, "llo")]) == [TextDelta(0, "lo")]


@pytest.mark.anyio
async def test_read_record_says_where_to_continue_and_whether_it_is_finished(redis_url: str) -> None:
    client = connect(redis_url, Role.TOOL)
    key = f"t{secrets.token_hex(5)}:out:{{j}}"
    try:
        empty = await read_record(client, key)
        assert (empty.events, empty.next_seq, empty.finished) == ([], 1, False)
        writer = EventWriter(client, key, "", "j", 0, 60)
        for batch in ([MessageStart(id="m", model="x")], [BlockStart(0, "text"), TextDelta(0, "a")]):
            writer.hold(batch)
            await writer.close()
        partial = await read_record(client, key)
        assert partial.next_seq == 3 and not partial.finished and len(partial.events) == 3
        writer.hold([MessageStop("end_turn")])
        await writer.close()
        assert (await read_record(client, key)).finished
    finally:
        await client.delete(key)
        await client.aclose()
