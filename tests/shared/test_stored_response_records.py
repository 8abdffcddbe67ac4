"""Stored Responses records: a streamed answer folds back into the same ChatResponse a whole
answer carries, a chain continues with names filled for Gemini, records round-trip through Redis
per client, and input-item pages follow OpenAI's cursor rules."""

from __future__ import annotations

import asyncio

import fakeredis
import orjson
import pytest

from shared.errors import GatewayError
from shared.model import (
    BlockStart,
    BlockStop,
    ChatRequest,
    ChatResponse,
    Complete,
    ErrorInfo,
    Message,
    MessageStart,
    MessageStop,
    Reasoning,
    ReasoningDelta,
    StreamError,
    Text,
    TextDelta,
    ToolArgsDelta,
    ToolCall,
    ToolResult,
    Usage,
    UsageEvent,
)
from shared.protocols import openai_responses_items as items
from shared.protocols.common import part_events
from shared.redis import stored_responses as store

ANSWER = ChatResponse("up-1", "up-model", [Reasoning("hmm", "sig", provider="anthropic"), Text("Hi"),
                                           ToolCall("c1", "get_weather", '{"city":"Paris"}')],
                      "tool_use", Usage(10, 5))


def test_fold_a_stream_into_the_whole_answer() -> None:
    events = [MessageStart("up-1", "up-model", 10)]
    for i, part in enumerate(ANSWER.content):
        events += part_events(i, part)
    events += [UsageEvent(Usage(10, 5)), MessageStop("tool_use")]
    assert store.fold(events) == ANSWER
    assert store.fold([Complete(ANSWER)]) == ANSWER
    split = [MessageStart("r", "m"), BlockStart(0, "text"), TextDelta(0, "a"), TextDelta(0, "b"), BlockStop(0),
             BlockStart(1, "tool_call", "c", "f"), ToolArgsDelta(1, "{}"), BlockStop(1),
             BlockStart(2, "reasoning"), ReasoningDelta(2, "x"), ReasoningDelta(2, "", "s", provider="p"),
             MessageStop("end_turn")]
    folded = store.fold(split)
    assert folded is not None and folded.content == [Text("ab"), ToolCall("c", "f", "{}"),
                                                     Reasoning("x", "s", provider="p")]
    assert store.fold(split[:-1]) is None  # unfinished
    assert store.fold([*split[:3], StreamError(ErrorInfo("upstream_error", "boom"))]) is None


def _record(response_id: str = "abc") -> store.StoredResponse:
    req = ChatRequest(model="m", messages=[Message("user", [Text("Weather?")])])
    return store.StoredResponse(response_id, 1700000000, req, ANSWER,
                                items.input_items("Weather?", response_id))


def test_continue_from_appends_and_names_results() -> None:
    follow = ChatRequest(model="m", messages=[Message("user", [ToolResult("c1", "21C"), Text("Thanks")])])
    store.continue_from(_record(), follow)
    assert [m.role for m in follow.messages] == ["user", "assistant", "user"]
    assert follow.messages[1].content == ANSWER.content
    assert follow.messages[2].content == [ToolResult("c1", "21C", name="get_weather"), Text("Thanks")]


def test_records_round_trip_per_client() -> None:
    async def scenario() -> None:
        redis = fakeredis.FakeAsyncRedis()
        await store.save(redis, "t", "alice", _record(), ttl=60)
        loaded = await store.load(redis, "t", "alice", "abc")
        assert loaded == _record()
        assert await store.load(redis, "t", "bob", "abc") is None
        assert 0 < await redis.ttl(store.key("t", "alice", "abc")) <= 60
        assert not await store.delete(redis, "t", "bob", "abc")
        assert await store.delete(redis, "t", "alice", "abc")
        assert await store.load(redis, "t", "alice", "abc") is None

    asyncio.run(scenario())


def test_stored_response_says_stored() -> None:
    body = orjson.loads(items.stored_response(_record()))
    assert (body["id"], body["store"], body["created_at"], body["status"]) == ("resp_abc", True, 1700000000,
                                                                               "completed")
    assert [o["type"] for o in body["output"]] == ["reasoning", "message", "function_call"]


def test_input_item_pages() -> None:
    listed = items.input_items([{"role": "user", "content": f"t{i}"} for i in range(5)], "r")
    assert listed[0] == {"role": "user", "type": "message", "id": "msg_r_0", "status": "completed",
                         "content": [{"type": "input_text", "text": "t0"}]}

    def page(**kw: object) -> dict[str, object]:
        args = {"after": None, "before": None, "limit": None, "order": None, **kw}
        return dict(orjson.loads(items.item_page(listed, **args)))  # type: ignore[arg-type]

    def ids(p: dict[str, object]) -> list[str]:
        return [str(i["id"])[-1] for i in p["data"]]  # type: ignore[attr-defined]

    assert ids(page()) == ["4", "3", "2", "1", "0"]
    first = page(limit=2, order="asc")
    assert ids(first) == ["0", "1"] and first["has_more"] is True and first["last_id"] == "msg_r_1"
    assert ids(page(limit=2, order="asc", after="msg_r_1")) == ["2", "3"]
    last = page(limit=2, order="asc", after="msg_r_3")
    assert ids(last) == ["4"] and last["has_more"] is False
    assert ids(page(limit=2, order="asc", before="msg_r_3")) == ["1", "2"]
    for bad in ({"limit": 0}, {"limit": 101}, {"order": "up"}, {"after": "nope"}):
        with pytest.raises(GatewayError) as info:
            page(**bad)
        assert info.value.status == 400
