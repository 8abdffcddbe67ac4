"""OpenAI Chat Completions dialect: client side (openai_chat) and upstream side (openai_chat_upstream).

Golden upstream streams live in tests/fixtures/openai_chat/<case>.sse with the expected internal
events in <case>.events.json, and the Chat client SSE each one is relayed as in
tests/fixtures/render/openai_chat/<case>.sse; regenerate them with SLUICE_UPDATE_GOLDEN=1 (then
review the diff). Rendered bodies and streams are also read back by the official openai SDK.
"""

from __future__ import annotations

import os
import random
import re
from pathlib import Path
from typing import Any

import httpx2
import msgspec
import openai
import orjson
import pytest
from openai.lib.streaming.chat import ChatCompletionStreamState
from openai.types.chat import ChatCompletion, ChatCompletionChunk, ChatCompletionMessageFunctionToolCall

from shared.errors import GatewayError
from shared.model import (
    BlockStart,
    BlockStop,
    ChatRequest,
    ChatResponse,
    Complete,
    ErrorInfo,
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
from shared.protocols import openai_chat as oc
from shared.protocols import openai_chat_upstream as up
from shared.protocols.sse import SseFrame, SseParser, frame

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "openai_chat"
CASES = sorted(p.stem for p in FIXTURES.glob("*.sse"))
UPDATE = os.environ.get("SLUICE_UPDATE_GOLDEN") == "1"


def _body(**overrides: Any) -> bytes:
    body: dict[str, Any] = {"model": "gpt-x", "messages": [{"role": "user", "content": "Hi"}]}
    body.update(overrides)
    return orjson.dumps(body)


def _invalid(body: bytes) -> GatewayError:
    with pytest.raises(GatewayError) as info:
        oc.parse_request(body)
    assert info.value.kind == "invalid_request" and info.value.status == 400
    return info.value


# --- golden upstream streams -----------------------------------------------------------------


def _parse_stream(raw: bytes, rng: random.Random | None) -> list[StreamEvent]:
    sse, parser = SseParser(), up.stream_parser()
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


def _golden(case: str) -> list[StreamEvent]:
    return msgspec.json.decode((FIXTURES / f"{case}.events.json").read_bytes(), type=list[StreamEvent])


@pytest.mark.parametrize("case", CASES)
def test_golden_invariants(case: str) -> None:
    events = _golden(case)
    assert isinstance(events[0], MessageStart)
    assert isinstance(events[-1], MessageStop | StreamError)
    opened: list[int] = []
    for e in events:
        if isinstance(e, BlockStart):
            assert not opened, "one block open at a time"
            opened.append(e.index)
        elif isinstance(e, BlockStop):
            assert opened == [e.index]
            opened.clear()
        elif isinstance(e, TextDelta | ToolArgsDelta | ReasoningDelta):
            assert opened == [e.index], "deltas land in the open block"
    if isinstance(events[-1], MessageStop):
        assert not opened


def test_golden_streams_map_what_each_server_sent() -> None:
    text = _golden("text")
    assert "".join(e.text for e in text if isinstance(e, TextDelta)) == "The weather in Paris is mild."
    assert text[-2:] == [UsageEvent(Usage(input_tokens=19, output_tokens=8)), MessageStop("end_turn")]
    tools = _golden("parallel_tools")
    starts = [e for e in tools if isinstance(e, BlockStart)]
    assert [(s.id, s.name) for s in starts] == [("call_Paris1", "get_weather"), ("call_Rome2", "get_weather")]
    args = {s.index: "".join(e.json for e in tools if isinstance(e, ToolArgsDelta) and e.index == s.index)
            for s in starts}
    assert [orjson.loads(a) for a in args.values()] == [{"city": "Paris"}, {"city": "Rome"}]
    assert tools[-2] == UsageEvent(Usage(input_tokens=80, output_tokens=40, cached_input_tokens=64))
    deepseek = _golden("deepseek_reasoning")
    assert "".join(e.text for e in deepseek if isinstance(e, ReasoningDelta)) == "The user asks about Paris."
    assert deepseek[-2] == UsageEvent(Usage(input_tokens=12, output_tokens=30, cached_input_tokens=8,
                                            reasoning_tokens=22))
    assert _golden("tool_reported_as_stop")[-1] == MessageStop("tool_use")  # derived from the content
    assert _golden("length")[-1] == MessageStop("max_tokens")
    error = _golden("error_chunk")[-1]
    assert isinstance(error, StreamError) and "had an error" in error.error.message
    cut = _golden("ended_early")[-1]
    assert isinstance(cut, StreamError) and cut.error.kind == "upstream_unavailable"


def test_stream_parser_is_done_after_done_marker() -> None:
    parser = up.StreamParser()
    events = [e for f in SseParser().feed((FIXTURES / "length.sse").read_bytes()) for e in parser.feed(f)]
    assert parser.done and isinstance(events[-1], MessageStop)
    assert parser.finish() == []  # the connection closing afterwards adds nothing


# --- upstream side: whole answers and errors -------------------------------------------------


def test_parse_response_reads_every_part() -> None:
    body = orjson.dumps({
        "id": "chatcmpl-1", "object": "chat.completion", "model": "gpt-4o",
        "choices": [{"index": 0, "finish_reason": "stop", "message": {
            "role": "assistant", "content": "Let me check.", "reasoning_content": "hmm",
            "tool_calls": [{"id": "call_1", "type": "function",
                            "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}},
                           {"id": "call_2", "type": "function", "function": {"name": "now", "arguments": ""}}]}}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15,
                  "prompt_tokens_details": {"cached_tokens": 4},
                  "completion_tokens_details": {"reasoning_tokens": 2}},
    })
    response = up.parse_response(body)
    assert response.content == [Reasoning("hmm"), Text("Let me check."),
                                ToolCall("call_1", "get_weather", '{"city":"Paris"}'), ToolCall("call_2", "now", "{}")]
    assert response.finish_reason == "tool_use"  # derived from the calls, whatever the server said
    assert response.usage == Usage(input_tokens=10, output_tokens=5, cached_input_tokens=4, reasoning_tokens=2)
    assert (response.id, response.model) == ("chatcmpl-1", "gpt-4o")


def test_parse_response_tolerates_nulls_and_missing_fields() -> None:
    body = b'{"id":null,"choices":[{"message":{"content":null,"reasoning":"r"},"finish_reason":"length"}]}'
    response = up.parse_response(body)
    assert response.content == [Reasoning("r")] and response.finish_reason == "max_tokens"
    assert response.usage == Usage() and response.id == ""
    assert up.parse_response(b"{}").content == []


def test_refusal_is_carried_as_text_whole_and_streamed() -> None:
    whole = up.parse_response(b'{"choices":[{"message":{"content":null,"refusal":"I cannot help."},'
                              b'"finish_reason":"stop"}]}')
    assert whole.content == [Text("I cannot help.")]
    parser = up.StreamParser()
    raw = (b'data: {"id":"c","choices":[{"delta":{"role":"assistant","refusal":""}}]}\n\n'
           b'data: {"id":"c","choices":[{"delta":{"refusal":"I cannot"}}]}\n\n'
           b'data: {"id":"c","choices":[{"delta":{"refusal":" help."},"finish_reason":"stop"}]}\n\n'
           b"data: [DONE]\n\n")
    events = [e for f in SseParser().feed(raw) for e in parser.feed(f)]
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "I cannot help."


def test_unreadable_answers_are_502s() -> None:
    with pytest.raises(GatewayError) as info:
        up.parse_response(b'{"choices": [{"message": {"content": 42}}]}')
    assert info.value.status == 502 and "choices[0].message.content" in info.value.message
    parser = up.StreamParser()
    (event,) = parser.feed(SseFrame(b'{"choices": [{"delta": {"content": 42}}]}'))
    assert isinstance(event, StreamError) and event.error.status == 502 and parser.done


@pytest.mark.parametrize(("status", "body", "headers", "kind", "message", "retry_after"), [
    (429, b'{"error":{"message":"Rate limit reached","type":"requests"}}', {"retry-after-ms": "1500"},
     "rate_limited", "Rate limit reached", 1.5),
    (400, b'{"detail":"max_tokens is too large"}', {}, "upstream_rejected", "max_tokens is too large", None),
    (503, b"<html>bad gateway</html>", {"retry-after": "2"}, "upstream_unavailable", "<html>bad gateway</html>", 2.0),
    (500, b'{"error":"plain string"}', {}, "upstream_unavailable", '{"error":"plain string"}', None),
])
def test_parse_error(status: int, body: bytes, headers: dict[str, str], kind: str, message: str,
                     retry_after: float | None) -> None:
    err = up.parse_error(status, body, headers)
    assert err.kind == kind and message in err.message and err.retry_after == retry_after


# --- upstream side: build_request ------------------------------------------------------------


def test_build_request_maps_every_field() -> None:
    req = ChatRequest(
        model="alias", system=[Text("Be brief."), Text("Use metric.")],
        messages=[Message("user", [Text("Weather?"), Image(data="AAAA", media_type="image/png")]),
                  Message("assistant", [Reasoning("think"), Text("Checking."), ToolCall("c1", "w", '{"a":1}')]),
                  Message("user", [ToolResult("c1", "21C"), Text("And tomorrow?")])],
        tools=[Tool("w", {"type": "object"}, "weather", strict=True)], tool_choice=ToolChoice("tool", "w"),
        parallel_tool_calls=False, response_format=ResponseFormat("json_schema", "out", {"type": "object"}, True),
        max_tokens=50, temperature=0.2, top_p=0.9, stop=["END"], n=2, seed=7, reasoning_effort="low",
        stream=True, user="u1")
    body = up.build_request(req, "gpt-4o")
    assert body["model"] == "gpt-4o" and body["max_tokens"] == 50
    assert body["messages"] == [
        {"role": "system", "content": "Be brief.\n\nUse metric."},
        {"role": "user", "content": [{"type": "text", "text": "Weather?"},
                                     {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]},
        {"role": "assistant", "content": "Checking.", "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "w", "arguments": '{"a":1}'}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "21C"},
        {"role": "user", "content": "And tomorrow?"},
    ]
    assert body["stream_options"] == {"include_usage": True}  # usage is always needed to reconcile
    assert body["tool_choice"] == {"type": "function", "function": {"name": "w"}}
    assert body["tools"] == [{"type": "function", "function": {"name": "w", "parameters": {"type": "object"},
                                                               "description": "weather", "strict": True}}]
    assert body["response_format"] == {"type": "json_schema", "json_schema": {
        "name": "out", "schema": {"type": "object"}, "strict": True}}
    assert (body["n"], body["seed"], body["stop"], body["user"]) == (2, 7, ["END"], "u1")
    assert (body["reasoning_effort"], body["parallel_tool_calls"]) == ("low", False)


def test_build_request_leaves_out_what_was_not_asked() -> None:
    body = up.build_request(ChatRequest(model="a", messages=[Message("user", [Text("Hi")])]), "m", 999)
    assert body == {"model": "m", "messages": [{"role": "user", "content": "Hi"}]}


# --- client side: parse ----------------------------------------------------------------------


def test_parse_full_request() -> None:
    req = oc.parse_request(_body(
        messages=[{"role": "system", "content": "S1"}, {"role": "user", "content": [
                      {"type": "text", "text": "Look"},
                      {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,QUJD"}},
                      {"type": "image_url", "image_url": {"url": "https://x/cat.png"}}]},
                  {"role": "developer", "content": [{"type": "text", "text": "S2"}]},
                  {"role": "assistant", "content": None, "reasoning_content": "r",
                   "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
                  {"role": "tool", "tool_call_id": "c1", "content": "ok"},
                  {"role": "user", "content": "thanks"}],
        tools=[{"type": "function", "function": {"name": "f"}}], tool_choice="required",
        response_format={"type": "json_schema", "json_schema": {"name": "o", "schema": {"type": "object"}}},
        max_completion_tokens=9, max_tokens=100, stop="X", stream=True, stream_options={"include_usage": True},
        seed=3, user="u"))
    assert req.system == [Text("S1"), Text("S2")]  # hoisted in order
    assert req.messages == [
        Message("user", [Text("Look"), Image(data="QUJD", media_type="image/jpeg"), Image(url="https://x/cat.png")]),
        Message("assistant", [Reasoning("r"), ToolCall("c1", "f", "{}")]),
        Message("user", [ToolResult("c1", "ok"), Text("thanks")]),  # the tool result and the text merge
    ]
    assert req.tools == [Tool("f", {"type": "object", "properties": {}})]
    assert req.tool_choice == ToolChoice("required")
    assert req.response_format == ResponseFormat("json_schema", "o", {"type": "object"})
    assert (req.max_tokens, req.stop, req.stream, req.include_usage) == (9, ["X"], True, True)
    assert (req.seed, req.user) == (3, "u")


@pytest.mark.parametrize(("overrides", "param"), [
    ({"messages": []}, "messages"),
    ({"temperature": 3}, "temperature"),
    ({"top_p": -0.1}, "top_p"),
    ({"n": 0}, "n"),
    ({"max_tokens": 0}, "max_tokens"),
    ({"response_format": {"type": "json_schema"}}, "response_format.json_schema"),
    ({"messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}]},
     "messages[0].content[0].type"),
    ({"messages": [{"role": "robot", "content": "x"}]}, "messages[0].role"),
])
def test_parse_errors_name_the_field(overrides: dict[str, Any], param: str) -> None:
    assert _invalid(_body(**overrides)).param == param


def test_parse_rejects_non_json() -> None:
    assert _invalid(b"{nope").param is None


# --- client side: render, read back by the openai SDK ----------------------------------------


RESPONSE = ChatResponse("up", "gpt-up", [Reasoning("why"), Text("Paris is mild."),
                                         ToolCall("call_1", "get_weather", '{"city":"Paris"}')],
                        "end_turn", Usage(input_tokens=10, output_tokens=6, cached_input_tokens=3, reasoning_tokens=1))


def test_render_response_is_a_valid_completion() -> None:
    completion = ChatCompletion.model_validate(orjson.loads(oc.render_response(RESPONSE, "gpt-client", "r1")))
    choice = completion.choices[0]
    assert completion.id == "chatcmpl-r1" and completion.model == "gpt-client"
    assert choice.finish_reason == "tool_calls" and choice.message.content == "Paris is mild."
    assert choice.message.tool_calls is not None
    call = choice.message.tool_calls[0]
    assert isinstance(call, ChatCompletionMessageFunctionToolCall) and call.function.arguments == '{"city":"Paris"}'
    assert choice.message.model_extra == {"reasoning_content": "why"}
    assert completion.usage is not None and completion.usage.total_tokens == 16
    assert completion.usage.prompt_tokens_details is not None
    assert completion.usage.prompt_tokens_details.cached_tokens == 3


@pytest.mark.parametrize(("finish", "expected"), [
    ("end_turn", "stop"), ("stop_sequence", "stop"), ("max_tokens", "length"),
    ("content_filter", "content_filter"), ("error", "stop")])
def test_render_response_finish_reasons(finish: Any, expected: str) -> None:
    body = orjson.loads(oc.render_response(ChatResponse("x", "m", [Text("a")], finish), "m", "r"))
    assert body["choices"][0]["finish_reason"] == expected


def _accumulate(pairs: list[tuple[str | None, bytes]]) -> Any:
    assert all(name is None for name, _ in pairs)  # Chat streams carry no event names
    assert pairs[-1] == (None, b"[DONE]")
    state: ChatCompletionStreamState[Any] = ChatCompletionStreamState()
    for _, data in pairs[:-1]:
        state.handle_chunk(ChatCompletionChunk.model_validate(orjson.loads(data)))
    return state.get_final_completion()


def _render(events: list[StreamEvent], include_usage: bool = True) -> list[tuple[str | None, bytes]]:
    renderer = oc.renderer("gpt-client", "r2", include_usage)
    return [pair for e in events for pair in renderer.render(e)]


def test_golden_streams_relay_to_the_sdk() -> None:
    """OpenAI-style upstream SSE -> internal events -> Chat client SSE -> the SDK's accumulator."""
    final = _accumulate(_render(_golden("parallel_tools")))
    calls = final.choices[0].message.tool_calls
    assert [(c.id, c.function.name, c.function.arguments) for c in calls] == [
        ("call_Paris1", "get_weather", '{"city": "Paris"}'), ("call_Rome2", "get_weather", '{"city": "Rome"}')]
    assert final.choices[0].finish_reason == "tool_calls" and final.usage.prompt_tokens == 80
    text = _accumulate(_render(_golden("deepseek_reasoning")))
    assert text.choices[0].message.content == "Mild, around 18°C."
    assert text.usage.completion_tokens_details.reasoning_tokens == 22


RENDERED = FIXTURES.parent / "render" / "openai_chat"
_CREATED = re.compile(rb'"created":\d+')


@pytest.mark.parametrize("case", CASES)
def test_rendered_stream_golden(case: str) -> None:
    """Each upstream golden, relayed to a Chat client: the exact SSE bytes it receives."""
    pairs = _render(_golden(case))
    rendered = _CREATED.sub(b'"created":0', b"".join(frame(data, name) for name, data in pairs))
    path = RENDERED / f"{case}.sse"
    if UPDATE:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(rendered)
    assert rendered == path.read_bytes(), f"{path} is stale; rerun with SLUICE_UPDATE_GOLDEN=1"
    frames = SseParser().feed(rendered)
    assert frames[-1].data == b"[DONE]" and all(f.event is None for f in frames)


def test_stream_usage_chunk_only_when_asked() -> None:
    with_usage = _render(_golden("text"), include_usage=True)
    without = _render(_golden("text"), include_usage=False)
    assert len(with_usage) == len(without) + 1
    assert orjson.loads(with_usage[-2][1])["usage"]["total_tokens"] == 27
    assert all("usage" not in orjson.loads(d) for _, d in without[:-1])


def test_stream_error_is_an_error_body_then_done() -> None:
    pairs = _render([MessageStart("x", "m"), TextDelta(0, "par"),
                     StreamError(ErrorInfo("upstream_unavailable", "Overloaded", 503))])
    assert pairs[-1] == (None, b"[DONE]")
    assert orjson.loads(pairs[-2][1]) == {"error": {"message": "Overloaded", "type": "server_error",
                                                    "param": None, "code": "upstream_unavailable"}}


def test_complete_replays_as_a_stream() -> None:
    final = _accumulate(_render([Complete(RESPONSE)]))
    message = final.choices[0].message
    assert message.content == "Paris is mild."
    assert message.tool_calls[0].function.arguments == '{"city":"Paris"}'
    assert final.choices[0].finish_reason == "tool_calls" and final.usage.total_tokens == 16


@pytest.mark.parametrize(("kind", "status", "etype", "code"), [
    ("invalid_request", 400, "invalid_request_error", None),
    ("unauthenticated", 401, "invalid_request_error", "invalid_api_key"),
    ("rate_limited", 429, "rate_limit_error", "rate_limit_exceeded"),
    ("upstream_timeout", 504, "server_error", "upstream_timeout"),
])
def test_render_error(kind: str, status: int, etype: str, code: str | None) -> None:
    got_status, body, headers = oc.render_error(GatewayError(kind, "boom", param="p"))
    assert got_status == status and headers == {}
    assert orjson.loads(body) == {"error": {"message": "boom", "type": etype, "param": "p", "code": code}}


def _client(status: int, body: bytes, headers: dict[str, str]) -> openai.OpenAI:
    def handler(request: httpx2.Request) -> httpx2.Response:
        assert request.url.path == "/v1/chat/completions"
        return httpx2.Response(status, headers={"content-type": "application/json", **headers}, content=body)

    return openai.OpenAI(base_url="http://sluice.test/v1", api_key="x", max_retries=0,
                         _strict_response_validation=True,
                         http_client=httpx2.Client(transport=httpx2.MockTransport(handler)))


def test_sdk_reads_response_and_errors() -> None:
    body = oc.render_response(RESPONSE, "gpt-client", "r1")
    completion = _client(200, body, {}).chat.completions.create(model="m", messages=HELLO)
    assert completion.choices[0].message.content == "Paris is mild."
    status, err_body, headers = oc.render_error(GatewayError("rate_limited", "slow", retry_after=1.25))
    assert headers == {"retry-after": "1", "retry-after-ms": "1250"}
    with pytest.raises(openai.RateLimitError) as info:
        _client(status, err_body, headers).chat.completions.create(model="m", messages=HELLO)
    assert info.value.code == "rate_limit_exceeded" and info.value.message.endswith("slow")
    status, err_body, headers = oc.render_error(GatewayError("invalid_request", "bad n", param="n"))
    with pytest.raises(openai.BadRequestError) as bad:
        _client(status, err_body, headers).chat.completions.create(model="m", messages=HELLO)
    assert bad.value.param == "n"


HELLO: Any = [{"role": "user", "content": "hi"}]
