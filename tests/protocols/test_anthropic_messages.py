"""Anthropic Messages dialect: client side (parse/render) and upstream side (build/parse/stream).

Golden streams live in tests/fixtures/anthropic/<case>.sse with the expected internal events in
<case>.events.json; regenerate them with SLUICE_UPDATE_GOLDEN=1 (then review the diff).
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx2
import msgspec
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
    FinishReason,
    Image,
    Message,
    MessageStart,
    MessageStop,
    Reasoning,
    ReasoningDelta,
    ResponseFormat,
    StreamError,
    StreamEvent,
    Text,
    TextDelta,
    Tool,
    ToolArgsDelta,
    ToolCall,
    ToolChoice,
    ToolResult,
    Usage,
    UsageEvent,
)
from shared.protocols import anthropic_messages as am
from shared.protocols import anthropic_upstream as au
from shared.protocols.sse import SseFrame, SseParser, frame

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "anthropic"
CASES = sorted(p.stem for p in FIXTURES.glob("*.sse"))
UPDATE = os.environ.get("SLUICE_UPDATE_GOLDEN") == "1"


def _body(**overrides: Any) -> bytes:
    body: dict[str, Any] = {"model": "claude-x", "max_tokens": 256,
                            "messages": [{"role": "user", "content": "Hi"}]}
    body.update(overrides)
    return orjson.dumps({k: v for k, v in body.items() if v is not None})


def _invalid(body: bytes) -> GatewayError:
    with pytest.raises(GatewayError) as info:
        am.parse_request(body)
    assert info.value.kind == "invalid_request" and info.value.status == 400
    return info.value


# --- golden upstream streams -----------------------------------------------------------------


def _parse_stream(raw: bytes, rng: random.Random | None) -> list[StreamEvent]:
    sse, parser = SseParser(), au.StreamParser()
    events: list[StreamEvent] = []
    pos = 0
    while pos < len(raw):
        size = rng.randint(1, 97) if rng else len(raw)
        for f in sse.feed(raw[pos:pos + size]):
            events += parser.feed(f)
        pos += size
    for f in sse.finish():
        events += parser.feed(f)
    return events + parser.finish()


END_OF = {  # how each recorded stream ends, as the upstream said it
    "text": MessageStop("end_turn"), "tool_use": MessageStop("tool_use"),
    "no_args_tool": MessageStop("tool_use"), "skipped_blocks": MessageStop("end_turn"),
    "thinking": MessageStop("stop_sequence", "END"),
}


@pytest.mark.parametrize("case", CASES)
def test_golden_stream_ends_as_the_upstream_said(case: str) -> None:
    last = _parse_stream((FIXTURES / f"{case}.sse").read_bytes(), None)[-1]
    if case in END_OF:
        assert last == END_OF[case]
    else:  # an error event, or a stream cut before message_stop: both worth another try
        assert isinstance(last, StreamError) and last.error.status == 503 and last.error.retryable


def test_unreadable_answers_are_502s() -> None:
    with pytest.raises(GatewayError) as info:
        au.parse_response(b'{"content": "not a list"}')
    assert info.value.status == 502
    parser = au.StreamParser()
    (event,) = parser.feed(SseFrame(b"{not json", "content_block_delta"))
    assert isinstance(event, StreamError) and event.error.status == 502 and parser.done


def test_cut_stream_stays_retryable_across_redis() -> None:
    """The flag rides the StreamError through its encoding (worker -> Redis -> API) and back."""
    parser = au.StreamParser()
    parser.feed(SseFrame(b'{"type":"message_start","message":{"id":"m","model":"c"}}', "message_start"))
    (cut,) = parser.finish()
    wire = msgspec.json.decode(msgspec.json.encode([cut]), type=list[StreamEvent])
    assert isinstance(wire[0], StreamError)
    assert GatewayError.from_info(wire[0].error).retryable and wire[0].error.kind == "upstream_unavailable"


@pytest.mark.parametrize("case", CASES)
def test_golden_stream(case: str) -> None:
    raw = (FIXTURES / f"{case}.sse").read_bytes()
    expected_path = FIXTURES / f"{case}.events.json"
    whole = _parse_stream(raw, None)
    if UPDATE:
        expected_path.write_bytes(msgspec.json.format(msgspec.json.encode(whole), indent=2) + b"\n")
    expected = msgspec.json.decode(expected_path.read_bytes(), type=list[StreamEvent])
    assert whole == expected
    for seed in range(8):  # the same events however the bytes are split
        assert _parse_stream(raw, random.Random(f"{case}-{seed}")) == expected


def test_golden_invariants() -> None:
    for case in CASES:
        events = msgspec.json.decode((FIXTURES / f"{case}.events.json").read_bytes(), type=list[StreamEvent])
        terminal = events[-1]
        assert isinstance(terminal, MessageStop | StreamError), case
        if isinstance(terminal, MessageStop):
            assert isinstance(events[-2], UsageEvent), case  # usage always precedes the stop
        args: dict[int, str] = {}
        for e in events:
            if isinstance(e, ToolArgsDelta):
                assert e.json, case  # never an empty fragment
                args[e.index] = args.get(e.index, "") + e.json
        for text in args.values():
            orjson.loads(text)  # every tool call's arguments are whole JSON


def test_stream_parser_specifics() -> None:
    events = _parse_stream((FIXTURES / "text.sse").read_bytes(), None)
    assert events[0] == MessageStart("msg_01TextAbc", "claude-sonnet-4-20250514", input_tokens=412)
    assert events[-2] == UsageEvent(Usage(input_tokens=412, output_tokens=9, cached_input_tokens=300))
    tool = _parse_stream((FIXTURES / "tool_use.sse").read_bytes(), None)
    args = "".join(e.json for e in tool if isinstance(e, ToolArgsDelta))
    assert orjson.loads(args) == {"location": "Paris, France", "unit": "celsius"}  # no "{}" prepended
    assert tool[-1] == MessageStop("tool_use")
    err = _parse_stream((FIXTURES / "overloaded.sse").read_bytes(), None)[-1]
    assert isinstance(err, StreamError)
    assert err.error.kind == "upstream_unavailable" and err.error.status == 503


def test_stream_parser_cumulative_usage_and_done() -> None:
    parser = au.StreamParser()
    start = {"type": "message_start", "message": {"id": "m", "model": "c", "usage": {
        "input_tokens": 5, "cache_read_input_tokens": 7, "output_tokens": 1}}}
    parser.feed(_frame(start))
    for n in (10, 25):  # cumulative: the second replaces the first
        parser.feed(_frame({"type": "message_delta", "delta": {"stop_reason": "max_tokens"},
                            "usage": {"output_tokens": n}}))
    out = parser.feed(_frame({"type": "message_stop"}))
    assert out == [UsageEvent(Usage(input_tokens=12, output_tokens=25, cached_input_tokens=7)),
                   MessageStop("max_tokens")]
    assert parser.done and parser.finish() == [] and parser.feed(_frame({"type": "ping"})) == []


def test_stream_parser_dispatches_without_event_names() -> None:
    parser = au.StreamParser()
    data = {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}
    only_data = SseParser().feed(b"data: " + orjson.dumps(data) + b"\n\n")[0]
    assert parser.feed(only_data) == [BlockStart(0, "text")]


def _frame(data: dict[str, Any]) -> SseFrame:
    return SseParser().feed(frame(orjson.dumps(data), str(data["type"])))[0]


# --- client side: parse_request --------------------------------------------------------------


def test_parse_full_request() -> None:
    body = {
        "model": "claude-x", "max_tokens": 1024,
        "system": [{"type": "text", "text": "You are terse.", "cache_control": {"type": "ephemeral"}}],
        "messages": [
            {"role": "user", "content": [
                {"type": "text", "text": "Weather in Paris?"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBOR"}},
                {"type": "image", "source": {"type": "url", "url": "https://x/y.jpg"}}]},
            {"role": "assistant", "content": [
                {"type": "thinking", "thinking": "hmm", "signature": "EqQB"},
                {"type": "redacted_thinking", "data": "Emwk"},
                {"type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": {"city": "Paris"}}]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_01", "content": "{\"temp\":21}",
                 "is_error": False},
                {"type": "text", "text": "and tomorrow?"}]},
        ],
        "tools": [{"name": "get_weather", "description": "d", "input_schema": {"type": "object"}}],
        "tool_choice": {"type": "any", "disable_parallel_tool_use": True},
        "thinking": {"type": "enabled", "budget_tokens": 2048},
        "output_config": {"format": {"type": "json_schema", "schema": {"type": "object"}}},
        "temperature": 0.2, "top_p": 0.9, "top_k": 40, "stop_sequences": ["END"],
        "metadata": {"user_id": "u1"}, "stream": True,
    }
    req = am.parse_request(orjson.dumps(body))
    assert req == ChatRequest(
        model="claude-x",
        system=[Text("You are terse.")],
        messages=[
            Message("user", [Text("Weather in Paris?"), Image(data="iVBOR", media_type="image/png"),
                             Image(url="https://x/y.jpg")]),
            Message("assistant", [Reasoning(text="hmm", signature="EqQB", provider="anthropic"),
                                  Reasoning(redacted="Emwk", provider="anthropic"),
                                  ToolCall("toolu_01", "get_weather", '{"city":"Paris"}')]),
            Message("user", [ToolResult("toolu_01", '{"temp":21}'), Text("and tomorrow?")]),
        ],
        tools=[Tool("get_weather", {"type": "object"}, "d")],
        tool_choice=ToolChoice("required"), parallel_tool_calls=False,
        response_format=ResponseFormat("json_schema", schema={"type": "object"}),
        max_tokens=1024, temperature=0.2, top_p=0.9, top_k=40, stop=["END"],
        reasoning_effort="medium", stream=True, include_usage=True, user="u1",
    )


def test_parse_minimal_and_variants() -> None:
    req = am.parse_request(_body(system="sys"))
    assert req.system == [Text("sys")] and req.messages == [Message("user", [Text("Hi")])]
    assert req.tool_choice is None and req.parallel_tool_calls is None and not req.stream
    two = [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]
    merged = am.parse_request(_body(messages=two))
    assert merged.messages == [Message("user", [Text("a"), Text("b")])]
    for choice, expected in [({"type": "auto"}, ToolChoice("auto")), ({"type": "none"}, ToolChoice("none")),
                             ({"type": "tool", "name": "f"}, ToolChoice("tool", "f"))]:
        parsed = am.parse_request(_body(tool_choice=choice))
        assert parsed.tool_choice == expected and parsed.parallel_tool_calls is None
    adaptive = am.parse_request(_body(thinking={"type": "adaptive"}, output_config={"effort": "max"}))
    assert adaptive.reasoning_effort == "high"
    assert am.parse_request(_body(thinking={"type": "disabled"})).reasoning_effort is None
    for budget, effort in [(1024, "low"), (2048, "medium"), (4096, "high"), (31999, "high")]:
        thinking = {"type": "enabled", "budget_tokens": budget}
        assert am.parse_request(_body(thinking=thinking)).reasoning_effort == effort


def test_parse_tool_result_forms() -> None:
    content = [{"type": "tool_result", "tool_use_id": "a", "content": [
                   {"type": "text", "text": "x"}, {"type": "text", "text": "y"},
                   {"type": "image", "source": {"type": "base64", "media_type": "image/gif", "data": "R0"}}],
                "is_error": True},
               {"type": "tool_result", "tool_use_id": "b"}]
    req = am.parse_request(_body(messages=[{"role": "user", "content": content}]))
    assert req.messages[0].content == [ToolResult("a", "xy", is_error=True),
                                       Image(data="R0", media_type="image/gif"), ToolResult("b", "")]


@pytest.mark.parametrize(("overrides", "param"), [
    ({"max_tokens": None}, "max_tokens"),
    ({"max_tokens": 0}, "max_tokens"),
    ({"temperature": 1.5}, "temperature"),
    ({"top_p": 2}, "top_p"),
    ({"top_k": -1}, "top_k"),
    ({"messages": []}, "messages"),
    ({"messages": [{"role": "tool", "content": "x"}]}, "messages[0].role"),
    ({"messages": [{"role": "system", "content": "x"}]}, "messages"),  # system only: no turn left
    ({"messages": [{"role": "user", "content": [{"type": "container_upload", "file_id": "f"}]}]},
     "messages[0].content[0].type"),
    ({"messages": [{"role": "user", "content": [{"type": "document", "source": {}}]}]},
     "messages[0].content[0].source"),
    ({"tools": [{"type": "web_search_20250305", "name": "web_search"}]}, "tools[0].type"),
    ({"tools": [{"name": "f"}]}, "tools[0].input_schema"),
    ({"tool_choice": {"type": "tool"}}, "tool_choice"),
    ({"thinking": {"type": "enabled", "budget_tokens": 0}}, "thinking.budget_tokens"),
    ({"output_config": {"effort": "extreme"}}, "output_config.effort"),
    ({"metadata": {"user_id": 5}}, "metadata.user_id"),
])
def test_parse_errors_name_the_field(overrides: dict[str, Any], param: str) -> None:
    err = _invalid(_body(**overrides))
    assert err.param == param
    assert param.split(".")[-1].split("[")[0] in err.message


def test_parse_rejects_non_json() -> None:
    assert "JSON" in _invalid(b"{nope").message


def test_count_tokens() -> None:
    with pytest.raises(GatewayError):
        am.parse_request(b'{"model":"m","messages":[{"role":"user","content":"abcd"}]}')
    req = am.parse_count_tokens_request(
        b'{"model":"m","system":"12345678","messages":[{"role":"user","content":"abcd"}]}')
    assert am.count_tokens(req) == 3  # 12 characters / 4
    req.tools = [Tool("f", {"type": "object"}, "d")]
    assert am.count_tokens(req) == 3 + 5  # "f" + "d" + '{"type":"object"}' = 19 characters -> 31 total
    req.messages[0].content.append(Image(url="https://x"))
    assert am.count_tokens(req) == 8 + 1600


# --- client side: render ---------------------------------------------------------------------


@pytest.mark.parametrize(("finish", "tool", "expected"), [
    ("end_turn", False, "end_turn"), ("stop_sequence", False, "stop_sequence"),
    ("max_tokens", False, "max_tokens"), ("tool_use", False, "end_turn"),
    ("content_filter", False, "refusal"), ("error", False, "end_turn"),
    ("end_turn", True, "tool_use"), ("tool_use", True, "tool_use"), ("max_tokens", True, "max_tokens"),
])
def test_render_response_stop_reason(finish: FinishReason, tool: bool, expected: str) -> None:
    content: list[Any] = [Text("hi")] + ([ToolCall("toolu_1", "f", "{}")] if tool else [])
    response = ChatResponse("x", "m", content, finish, stop_sequence="END")
    out = orjson.loads(am.render_response(response, "m", "r"))
    assert out["stop_reason"] == expected
    assert out["stop_sequence"] == ("END" if expected == "stop_sequence" else None)


def test_render_response_shape_and_usage() -> None:
    response = ChatResponse(
        "up", "claude-up",
        [Reasoning("think", signature="sig", provider="anthropic"),
         Reasoning("other", signature="x", provider="gemini"),
         Reasoning(redacted="opaque", provider="anthropic"), Text("Hello"),
         ToolCall("toolu_1", "f", '{"a": [1, 2]}'), ToolCall("toolu_2", "g", ""),
         ToolCall("toolu_3", "h", "{bad")],
        "tool_use", Usage(input_tokens=500, output_tokens=20, cached_input_tokens=300))
    body = am.render_response(response, "claude-client", "req42")
    out = orjson.loads(body)
    assert out["id"] == "msg_req42" and out["model"] == "claude-client" and out["type"] == "message"
    assert out["content"] == [
        {"type": "thinking", "thinking": "think", "signature": "sig"},
        {"type": "thinking", "thinking": "other", "signature": ""},  # foreign signatures stay home
        {"type": "redacted_thinking", "data": "opaque"},
        {"type": "text", "text": "Hello"},
        {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {"a": [1, 2]}},
        {"type": "tool_use", "id": "toolu_2", "name": "g", "input": {}},
        {"type": "tool_use", "id": "toolu_3", "name": "h", "input": {}},
    ]
    assert out["usage"] == {"input_tokens": 200, "output_tokens": 20,
                            "cache_creation_input_tokens": 0, "cache_read_input_tokens": 300}
    message = anthropic.types.Message.model_validate(out, strict=True)
    assert message.stop_reason == "tool_use"


@pytest.mark.parametrize(("kind", "status", "etype"), [
    ("invalid_request", 400, "invalid_request_error"), ("unsupported", 400, "invalid_request_error"),
    ("unauthenticated", 401, "authentication_error"), ("permission_denied", 403, "permission_error"),
    ("not_found", 404, "not_found_error"), ("rate_limited", 429, "rate_limit_error"),
    ("internal", 500, "api_error"), ("upstream_auth", 502, "api_error"),
    ("upstream_unavailable", 529, "overloaded_error"), ("upstream_timeout", 504, "timeout_error"),
])
def test_render_error(kind: str, status: int, etype: str) -> None:
    got_status, body, headers = am.render_error(GatewayError(kind, "boom"))
    assert got_status == status and headers == {}
    assert orjson.loads(body) == {"type": "error", "error": {"type": etype, "message": "boom"}}


def test_render_error_retry_after() -> None:
    _, _, headers = am.render_error(GatewayError("rate_limited", "slow down", retry_after=2.2))
    assert headers == {"retry-after": "3"}


# --- the official SDK as the client ----------------------------------------------------------


def _sse_bytes(pairs: list[tuple[str | None, bytes]]) -> bytes:
    return b"".join(frame(data, name) for name, data in pairs)


def _client(raw: bytes, status: int = 200, headers: dict[str, str] | None = None) -> anthropic.Anthropic:
    def handler(request: httpx2.Request) -> httpx2.Response:
        assert request.url.path == "/v1/messages"
        rng = random.Random(len(raw))

        def chunks() -> Iterator[bytes]:
            pos = 0
            while pos < len(raw):
                size = rng.randint(1, 50)
                yield raw[pos:pos + size]
                pos += size

        ctype = "text/event-stream" if raw.startswith(b"event:") else "application/json"
        return httpx2.Response(status, headers={"content-type": ctype, **(headers or {})}, content=chunks())

    return anthropic.Anthropic(base_url="http://sluice.test", api_key="x", max_retries=0,
                               _strict_response_validation=True,
                               http_client=httpx2.Client(transport=httpx2.MockTransport(handler)))


HELLO: Any = [{"role": "user", "content": "hi"}]


def _final(pairs: list[tuple[str | None, bytes]]) -> Any:
    client = _client(_sse_bytes(pairs))
    with client.messages.stream(model="claude-x", max_tokens=100, messages=HELLO) as s:
        return s.get_final_message()


EVENTS: list[StreamEvent] = [
    MessageStart("up", "claude-up", input_tokens=40),
    BlockStart(0, "reasoning"), ReasoningDelta(0, "Let me "), ReasoningDelta(0, "think."),
    ReasoningDelta(0, signature="sig=="), BlockStop(0),
    BlockStart(1, "text"), TextDelta(1, "Checking "), TextDelta(1, "Paris."), BlockStop(1),
    BlockStart(2, "tool_call", "toolu_A", "get_weather"), ToolArgsDelta(2, '{"city": "Pa'),
    ToolArgsDelta(2, 'ris"}'), BlockStop(2),
    BlockStart(3, "tool_call", "toolu_B", "get_time"), BlockStop(3),
    UsageEvent(Usage(input_tokens=40, output_tokens=33, cached_input_tokens=30)),
    MessageStop("end_turn"),
]


def test_stream_renderer_event_names_and_indexes() -> None:
    renderer = am.StreamRenderer("claude-client", "r1", include_usage=False)
    pairs = [p for e in EVENTS for p in renderer.render(e)]
    names = [n for n, _ in pairs]
    assert names[:2] == ["message_start", "ping"] and names[-2:] == ["message_delta", "message_stop"]
    datas = [orjson.loads(d) for _, d in pairs]
    assert all(d["type"] == n for n, d in zip(names, datas, strict=True))
    starts = [d["index"] for d in datas if d["type"] == "content_block_start"]
    assert starts == [0, 1, 2, 3]
    no_args = [d["delta"] for d in datas if d.get("index") == 3 and d["type"] == "content_block_delta"]
    assert no_args == [{"type": "input_json_delta", "partial_json": "{}"}]
    assert datas[-2]["usage"] == {"input_tokens": 10, "output_tokens": 33,
                                  "cache_creation_input_tokens": 0, "cache_read_input_tokens": 30}
    assert renderer.render(MessageStop("end_turn")) == []  # nothing after the end


def test_stream_renderer_through_sdk_accumulator() -> None:
    renderer = am.StreamRenderer("claude-client", "r1", include_usage=True)
    message = _final([p for e in EVENTS for p in renderer.render(e)])
    assert message.id == "msg_r1" and message.model == "claude-client" and message.stop_reason == "tool_use"
    thinking, text, tool, no_args = message.content
    assert (thinking.type, thinking.thinking, thinking.signature) == ("thinking", "Let me think.", "sig==")
    assert (text.type, text.text) == ("text", "Checking Paris.")
    assert (tool.type, tool.id, tool.name) == ("tool_use", "toolu_A", "get_weather")
    assert tool.input == {"city": "Paris"}
    assert (no_args.name, no_args.input) == ("get_time", {})
    assert message.usage.input_tokens == 10 and message.usage.cache_read_input_tokens == 30
    assert message.usage.output_tokens == 33


def test_stream_renderer_deltas_without_block_start() -> None:
    renderer = am.StreamRenderer("m", "r2", include_usage=False)
    events: list[StreamEvent] = [MessageStart("x", "m"), TextDelta(0, "a"), TextDelta(0, "b"),
                                 ToolArgsDelta(1, '{"k":1}'), UsageEvent(Usage()), MessageStop("tool_use")]
    message = _final([p for e in events for p in renderer.render(e)])
    assert [b.type for b in message.content] == ["text", "tool_use"]
    assert message.content[0].text == "ab" and message.content[1].input == {"k": 1}


def test_stream_renderer_replays_complete() -> None:
    response = ChatResponse("x", "m", [Reasoning("t", signature="s", provider="anthropic"),
                                       Reasoning(redacted="R", provider="anthropic"), Text("done"),
                                       ToolCall("toolu_9", "f", '{"q":1}')],
                            "stop_sequence", Usage(input_tokens=9, output_tokens=4), stop_sequence="END")
    message = _final(am.StreamRenderer("m", "r3", include_usage=False).render(Complete(response)))
    assert [b.type for b in message.content] == ["thinking", "redacted_thinking", "text", "tool_use"]
    assert message.content[1].data == "R" and message.content[3].input == {"q": 1}
    assert message.stop_reason == "stop_sequence" and message.stop_sequence == "END"
    assert message.usage.input_tokens == 9 and message.usage.output_tokens == 4
    broken = ChatResponse("x", "m", [ToolCall("toolu_8", "f", '{"cut": "of')], "max_tokens")
    message = _final(am.StreamRenderer("m", "r3", include_usage=False).render(Complete(broken)))
    assert message.content[0].input == {} and message.stop_reason == "max_tokens"


def test_stream_renderer_error_raises_in_sdk() -> None:
    renderer = am.StreamRenderer("m", "r4", include_usage=False)
    pairs = renderer.render(MessageStart("x", "m")) + renderer.render(TextDelta(0, "par"))
    error = ErrorInfo(kind="upstream_unavailable", message="Overloaded", status=503)
    pairs += renderer.render(StreamError(error))
    assert pairs[-1][0] == "error"
    assert orjson.loads(pairs[-1][1]) == {"type": "error",
                                          "error": {"type": "overloaded_error", "message": "Overloaded"}}
    with pytest.raises(anthropic.APIStatusError, match="overloaded_error"):
        _final(pairs)


def test_upstream_stream_relayed_to_sdk() -> None:
    """Anthropic upstream SSE -> internal events -> Anthropic client SSE -> the SDK's accumulator."""
    renderer = am.StreamRenderer("claude-client", "r5", include_usage=True)
    events = _parse_stream((FIXTURES / "tool_use.sse").read_bytes(), random.Random(5))
    message = _final([p for e in events for p in renderer.render(e)])
    assert message.content[1].input == {"location": "Paris, France", "unit": "celsius"}
    assert message.stop_reason == "tool_use" and message.usage.output_tokens == 65
    assert message.usage.input_tokens == 377


def test_sdk_reads_response_and_errors() -> None:
    body = am.render_response(ChatResponse("x", "m", [Text("hi")], "end_turn", Usage(5, 2)), "m", "r6")
    message = _client(body).messages.create(model="m", max_tokens=5, messages=HELLO)
    assert message.content[0].text == "hi" and message.usage.input_tokens == 5
    status, err_body, headers = am.render_error(GatewayError("upstream_unavailable", "busy", retry_after=1))
    with pytest.raises(anthropic.OverloadedError):
        _client(err_body, status, headers).messages.create(model="m", max_tokens=5, messages=HELLO)


# --- upstream side: build_request ------------------------------------------------------------


def _req(**kwargs: Any) -> ChatRequest:
    messages = kwargs.pop("messages", [Message("user", [Text("Hi")])])
    return ChatRequest(model="alias", messages=messages, **kwargs)


def test_build_request_basics() -> None:
    req = _req(system=[Text("a"), Text("b")], stop=["END"], stream=True, user="u",
               tools=[Tool("f", {}, "desc")], tool_choice=ToolChoice("required"), parallel_tool_calls=False,
               response_format=ResponseFormat("json_schema", schema={"type": "object"}), seed=7, top_k=5)
    body = au.build_request(req, "claude-up")
    assert body == {
        "model": "claude-up", "max_tokens": 4096,
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}],
        "system": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}],
        "stream": True, "stop_sequences": ["END"],
        "tools": [{"name": "f", "input_schema": {"type": "object", "properties": {}}, "description": "desc"}],
        "tool_choice": {"type": "any", "disable_parallel_tool_use": True},
        "top_k": 5,
        "output_config": {"format": {"type": "json_schema", "schema": {"type": "object"}}},
        "metadata": {"user_id": "u"},
    }  # seed dropped
    assert au.build_request(_req(max_tokens=10), "c", default_max_tokens=99)["max_tokens"] == 10
    assert au.build_request(_req(), "c", default_max_tokens=99)["max_tokens"] == 99


@pytest.mark.parametrize(("choice", "parallel", "expected"), [
    (None, None, None), (None, False, {"type": "auto", "disable_parallel_tool_use": True}),
    (ToolChoice("auto"), None, {"type": "auto"}), (ToolChoice("none"), False, {"type": "none"}),
    (ToolChoice("tool", "f"), False, {"type": "tool", "name": "f", "disable_parallel_tool_use": True}),
])
def test_build_tool_choice(choice: ToolChoice | None, parallel: bool | None, expected: Any) -> None:
    body = au.build_request(_req(tools=[Tool("f")], tool_choice=choice, parallel_tool_calls=parallel), "c")
    assert body.get("tool_choice") == expected
    assert "tool_choice" not in au.build_request(_req(tool_choice=choice), "c")  # no tools, no choice


def test_build_sampling_and_thinking() -> None:
    body = au.build_request(_req(temperature=1.7, top_p=0.5), "c")
    assert body["temperature"] == 1.0 and "top_p" not in body  # clamped; only one of the two
    assert au.build_request(_req(top_p=0.5), "c")["top_p"] == 0.5
    body = au.build_request(_req(reasoning_effort="high", temperature=0.3, top_k=3, max_tokens=8000), "c")
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 4096}
    assert not {"temperature", "top_k", "top_p"} & body.keys()
    capped = au.build_request(_req(reasoning_effort="high", max_tokens=3000), "c")
    assert capped["thinking"]["budget_tokens"] == 2999  # the budget stays under max_tokens
    assert "thinking" not in au.build_request(_req(reasoning_effort="low", max_tokens=1000), "c")
    assert "thinking" not in au.build_request(_req(reasoning_effort="none"), "c")
    forced = _req(reasoning_effort="low", tools=[Tool("f")], tool_choice=ToolChoice("tool", "f"))
    assert "thinking" not in au.build_request(forced, "c")


def test_build_unsupported() -> None:
    bmp = [Message("user", [Image(data="x", media_type="image/bmp")])]
    for req, param in [(_req(n=2), "n"),
                       (_req(response_format=ResponseFormat("json_object")), "response_format"),
                       (_req(response_format=ResponseFormat("json_schema")), "response_format"),
                       (_req(messages=bmp), "image")]:
        with pytest.raises(GatewayError) as info:
            au.build_request(req, "c")
        assert info.value.kind == "unsupported" and info.value.param == param


def test_build_images() -> None:
    msgs = [Message("user", [Image(url="https://x/a.png"), Image(data="AA", media_type="image/webp"),
                             Image(url="data:image/jpeg;base64,BB")])]
    content = au.build_request(_req(messages=msgs), "c")["messages"][0]["content"]
    assert [c["source"] for c in content] == [
        {"type": "url", "url": "https://x/a.png"},
        {"type": "base64", "media_type": "image/webp", "data": "AA"},
        {"type": "base64", "media_type": "image/jpeg", "data": "BB"},
    ]


def test_tool_round_trip_keeps_pairing_and_thinking_bytes() -> None:
    thinking = {"type": "thinking", "thinking": "Weather first.\n", "signature": "EqQBCgIYAh+/=="}
    history = [
        {"role": "user", "content": "Weather in Paris and Rome?"},
        {"role": "assistant", "content": [thinking,
            {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}},
            {"type": "tool_use", "id": "toolu_2", "name": "get_weather", "input": {}}]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_1", "content": "21C"},
            {"type": "tool_result", "tool_use_id": "toolu_2", "content": [{"type": "text", "text": "boom"}],
             "is_error": True}]},
        {"role": "assistant", "content": "Paris is 21C. "},
        {"role": "user", "content": "Thanks"},
    ]
    body = au.build_request(am.parse_request(_body(messages=history)), "claude-up")
    assert body["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "Weather in Paris and Rome?"}]},
        {"role": "assistant", "content": [thinking,
            {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}},
            {"type": "tool_use", "id": "toolu_2", "name": "get_weather", "input": {}}]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_1", "content": "21C"},
            {"type": "tool_result", "tool_use_id": "toolu_2", "content": "boom", "is_error": True}]},
        {"role": "assistant", "content": [{"type": "text", "text": "Paris is 21C. "}]},
        {"role": "user", "content": [{"type": "text", "text": "Thanks"}]},
    ]
    assert orjson.dumps(body["messages"][1]["content"][0]) == orjson.dumps(thinking)


def test_build_messages_cleanup() -> None:
    msgs = [
        Message("user", [Text("q")]),
        Message("assistant", [Reasoning("openai thought"), Reasoning("x", signature="g", provider="gemini"),
                              ToolCall("c1", "f", "{bad json"), ToolCall("c2", "g", "")]),
        Message("user", [Text("note"), ToolResult("c1", "r1"), ToolResult("c2", "")]),
        Message("assistant", [Text("")]),
        Message("assistant", [Text("partial answer  \n")]),
    ]
    out = au.build_request(_req(messages=msgs), "c")["messages"]
    assert out == [
        {"role": "user", "content": [{"type": "text", "text": "q"}]},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "c1", "name": "f", "input": {}},
                                          {"type": "tool_use", "id": "c2", "name": "g", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "c1", "content": "r1"},
                                     {"type": "tool_result", "tool_use_id": "c2"},
                                     {"type": "text", "text": "note"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "partial answer"}]},
    ]


# --- upstream side: parse_response / parse_error ---------------------------------------------


def test_parse_response() -> None:
    body = orjson.dumps({
        "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-up",
        "content": [{"type": "thinking", "thinking": "t", "signature": "s"},
                    {"type": "redacted_thinking", "data": "R"},
                    {"type": "server_tool_use", "id": "srv", "name": "web_search", "input": {}},
                    {"type": "text", "text": "Hi"},
                    {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {"a": 1}}],
        "stop_reason": "tool_use", "stop_sequence": None,
        "usage": {"input_tokens": 10, "cache_creation_input_tokens": 20, "cache_read_input_tokens": 30,
                  "output_tokens": 5},
    })
    assert au.parse_response(body) == ChatResponse(
        "msg_1", "claude-up",
        [Reasoning("t", signature="s", provider="anthropic"), Reasoning(redacted="R", provider="anthropic"),
         Text("Hi"), ToolCall("toolu_1", "f", '{"a":1}')],
        "tool_use", Usage(input_tokens=60, output_tokens=5, cached_input_tokens=30))


@pytest.mark.parametrize(("stop_reason", "finish"), [
    ("end_turn", "end_turn"), ("stop_sequence", "stop_sequence"), ("max_tokens", "max_tokens"),
    ("tool_use", "tool_use"), ("refusal", "content_filter"), ("pause_turn", "end_turn"),
    ("model_context_window_exceeded", "max_tokens"), (None, "end_turn"),
])
def test_parse_response_stop_reasons(stop_reason: str | None, finish: str) -> None:
    body = orjson.dumps({"id": "m", "model": "c", "content": [{"type": "text", "text": "x"}],
                         "stop_reason": stop_reason, "stop_sequence": "END", "usage": {}})
    response = au.parse_response(body)
    assert response.finish_reason == finish
    assert response.stop_sequence == ("END" if finish == "stop_sequence" else None)


def test_parse_error() -> None:
    body = b'{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"},"request_id":"req_1"}'
    overloaded = au.parse_error(529, body, {"retry-after": "4"})
    assert overloaded.kind == "upstream_unavailable" and overloaded.retryable and overloaded.retry_after == 4
    assert "Overloaded" in overloaded.message
    limited = au.parse_error(429, b'{"type":"error","error":{"type":"rate_limit_error","message":"slow"}}',
                             {"retry-after": "7"})
    assert limited.kind == "rate_limited" and limited.retry_after == 7
    body = b'{"type":"error","error":{"type":"invalid_request_error","message":"bad x"}}'
    bad = au.parse_error(400, body, {})
    assert bad.kind == "upstream_rejected" and "bad x" in bad.message and not bad.retryable
    assert au.parse_error(401, b"nope", {}).kind == "upstream_auth"
    assert au.parse_error(502, b"<html>bad gateway</html>", {}).kind == "upstream_unavailable"
