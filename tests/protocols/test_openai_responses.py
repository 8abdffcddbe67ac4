"""OpenAI Responses client dialect: parse, render, stream, golden SSE and the official SDK end to end."""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import orjson
import pydantic
import pytest
import uvicorn
from openai.types.responses import Response, ResponseStreamEvent
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response as HttpResponse
from starlette.responses import StreamingResponse
from starlette.routing import Route

from shared.errors import GatewayError
from shared.model import (
    BlockStart,
    BlockStop,
    ChatRequest,
    ChatResponse,
    Complete,
    ErrorInfo,
    Image,
    MessageStart,
    MessageStop,
    Reasoning,
    ReasoningDelta,
    StreamError,
    StreamEvent,
    Text,
    TextDelta,
    ToolArgsDelta,
    ToolCall,
    ToolResult,
    Usage,
    UsageEvent,
)
from shared.protocols import openai_responses as dialect
from shared.protocols import openai_responses_render
from shared.protocols.sse import SseParser, frame

GOLDEN = Path(__file__).resolve().parent.parent / "fixtures" / "render" / "openai_responses"
EVENTS = pydantic.TypeAdapter(ResponseStreamEvent)
WEATHER_TOOL = {"type": "function", "name": "get_weather", "description": "Weather by city",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}, "strict": False}


def body(**fields: Any) -> bytes:
    return orjson.dumps({"model": "gpt-test", **fields})


def parse_error(**fields: Any) -> GatewayError:
    with pytest.raises(GatewayError) as info:
        dialect.parse_request(body(**fields))
    assert info.value.status == 400
    return info.value


# --- parse -----------------------------------------------------------------------------------


def test_parse_string_input_and_parameters() -> None:
    req = dialect.parse_request(body(
        input="Hi", instructions="Be terse.", max_output_tokens=64, temperature=0.3, top_p=0.9,
        parallel_tool_calls=False, reasoning={"effort": "low", "summary": "auto"}, stream=True,
        safety_identifier="u-1", store=True, include=["reasoning.encrypted_content"],
    ))
    assert req.messages[0].role == "user" and req.messages[0].content == [Text("Hi")]
    assert req.system == [Text("Be terse.")]
    assert (req.max_tokens, req.temperature, req.top_p) == (64, 0.3, 0.9)
    assert req.parallel_tool_calls is False and req.reasoning_effort == "low"
    assert req.stream and req.include_usage and req.user == "u-1"


def test_parse_items_with_function_call_history() -> None:
    req = dialect.parse_request(body(input=[
        {"role": "developer", "content": "Use tools."},
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Weather in Paris?"}]},
        {"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "get_weather",
         "arguments": '{"city":"Paris"}', "status": "completed"},
        {"type": "function_call", "call_id": "call_2", "name": "get_time", "arguments": ""},
        {"type": "function_call_output", "call_id": "call_1", "output": '{"temp":21}'},
        {"type": "function_call_output", "call_id": "call_2",
         "output": [{"type": "input_text", "text": "noon"}]},
        {"role": "assistant", "content": [{"type": "output_text", "text": "21C", "annotations": []}]},
        {"role": "user", "content": "Thanks"},
    ], instructions="Be terse.", tools=[WEATHER_TOOL],
        tool_choice={"type": "function", "name": "get_weather"}))
    assert req.system == [Text("Be terse."), Text("Use tools.")]
    assert [m.role for m in req.messages] == ["user", "assistant", "user", "assistant", "user"]
    assert req.messages[1].content == [
        ToolCall(id="call_1", name="get_weather", arguments='{"city":"Paris"}'),
        ToolCall(id="call_2", name="get_time", arguments="{}"),
    ]
    assert req.messages[2].content == [
        ToolResult(tool_call_id="call_1", content='{"temp":21}', name="get_weather"),
        ToolResult(tool_call_id="call_2", content="noon", name="get_time"),
    ]
    assert req.messages[3].content == [Text("21C")]
    assert req.tools[0].name == "get_weather" and req.tools[0].strict is False
    assert req.tool_choice is not None
    assert (req.tool_choice.mode, req.tool_choice.name) == ("tool", "get_weather")


def test_parse_images() -> None:
    req = dialect.parse_request(body(input=[{"role": "user", "content": [
        {"type": "input_text", "text": "What is this?"},
        {"type": "input_image", "image_url": "data:image/png;base64,iVBORw0KGgo=", "detail": "low"},
        {"type": "input_image", "image_url": "https://example.com/cat.jpg"},
    ]}]))
    assert req.messages[0].content[1:] == [Image(data="iVBORw0KGgo=", media_type="image/png"),
                                           Image(url="https://example.com/cat.jpg")]


def test_parse_text_format_and_tool_choice_modes() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    req = dialect.parse_request(body(input="x", tool_choice="required", text={
        "format": {"type": "json_schema", "name": "answer", "schema": schema, "strict": True}}))
    assert req.response_format is not None
    assert (req.response_format.type, req.response_format.name, req.response_format.schema) == (
        "json_schema", "answer", schema)
    assert req.tool_choice is not None and req.tool_choice.mode == "required"
    req = dialect.parse_request(body(input="x", text={"format": {"type": "json_object"}}))
    assert req.response_format is not None and req.response_format.type == "json_object"
    assert dialect.parse_request(body(input="x", text={"format": {"type": "text"}})).response_format is None


@pytest.mark.parametrize(("fields", "param"), [
    ({"input": "x", "conversation": "conv_1"}, "conversation"),
    ({"input": "x", "background": True}, "background"),
    ({"input": "x", "tools": [WEATHER_TOOL, {"type": "custom", "name": "apply_patch"}]}, "tools[1].type"),
    ({"input": "x", "tool_choice": {"type": "web_search_preview"}}, "tool_choice.type"),
    ({"input": [{"role": "user", "content": "x"}, {"type": "item_reference", "id": "msg_1"}]},
     "input[1].type"),
    ({"input": [{"type": "web_search_call", "id": "ws_1"}]}, "input[0].type"),
    ({"input": [{"role": "user", "content": [{"type": "input_image", "file_id": "file-1"}]}]},
     "input[0].content[0].file_id"),
])
def test_parse_unsupported_names_the_field(fields: dict[str, Any], param: str) -> None:
    err = parse_error(**fields)
    assert err.kind == "unsupported" and err.param == param


@pytest.mark.parametrize(("fields", "param"), [
    ({}, "input"),
    ({"input": []}, "input"),
    ({"input": "x", "temperature": 3}, "temperature"),
    ({"input": "x", "max_output_tokens": 0}, "max_output_tokens"),
    ({"input": "x", "reasoning": {"effort": "extreme"}}, "reasoning.effort"),
    ({"input": [{"role": "user", "content": 5}]}, "input[0].content"),
    ({"input": [{"role": "robot", "content": "x"}]}, "input[0].role"),
    ({"input": [{"type": "function_call", "name": "f", "arguments": "{}"}]}, "input[0]"),
    ({"input": "x", "tools": [{"type": "function"}]}, "tools[0]"),
    ({"input": "x", "text": {"format": {"type": "json_schema", "name": "n"}}}, "text.format.schema"),
    ({"input": "x", "text": {"format": {"type": "xml"}}}, "text.format.type"),
])
def test_parse_invalid_names_the_field(fields: dict[str, Any], param: str) -> None:
    err = parse_error(**fields)
    assert err.kind == "invalid_request" and err.param == param


def test_parse_rejects_non_json() -> None:
    with pytest.raises(GatewayError) as info:
        dialect.parse_request(b"{nope")
    assert info.value.kind == "invalid_request"


def test_reasoning_items_round_trip() -> None:
    reply = ChatResponse(id="x", model="m", finish_reason="end_turn", content=[
        Reasoning(text="Let me think.", signature="SIG==", provider="anthropic"),
        Reasoning(redacted="REDACTED", provider="anthropic"),
        Text("Done."),
    ])
    output = orjson.loads(dialect.render_response(reply, "m", "r1"))["output"]
    req = dialect.parse_request(body(input=[{"role": "user", "content": "q"}, *output]))
    assert req.messages[1].content == reply.content
    # A blob Sluice did not make is OpenAI's own.
    req = dialect.parse_request(body(input=[{"role": "user", "content": "q"}, {
        "type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "a"},
                                                       {"type": "summary_text", "text": "b"}],
        "encrypted_content": "gAAAA"}]))
    assert req.messages[1].content == [Reasoning(text="a\n\nb", signature="gAAAA", provider="openai")]
    tampered = {**output[0], "encrypted_content": "sluice.!!!"}
    err = parse_error(input=[{"role": "user", "content": "q"}, tampered])
    assert err.param == "input[1].encrypted_content"


def test_render_error_is_openai_shaped() -> None:
    status, payload, headers = dialect.render_error(
        GatewayError("rate_limited", "slow down", retry_after=2.0))
    assert status == 429 and headers["retry-after"] == "2"
    assert orjson.loads(payload)["error"]["code"] == "rate_limit_exceeded"


# --- render ----------------------------------------------------------------------------------

REPLY = ChatResponse(
    id="up-1", model="upstream", finish_reason="tool_use",
    usage=Usage(input_tokens=30, output_tokens=12, cached_input_tokens=8, reasoning_tokens=4),
    content=[
        Reasoning(text="Need the weather.", signature="c2ln", provider="anthropic"),
        Text("Checking."),
        ToolCall(id="call_1", name="get_weather", arguments='{"city":"Paris"}'),
    ],
)


def test_render_response_validates_against_sdk() -> None:
    data = orjson.loads(dialect.render_response(REPLY, "gpt-test", "r1"))
    response = Response.model_validate(data)
    assert response.id == "resp_r1" and response.status == "completed" and response.model == "gpt-test"
    assert [item.type for item in response.output] == ["reasoning", "message", "function_call"]
    assert [item.id for item in response.output] == ["rs_r1_0", "msg_r1_1", "fc_r1_2"]
    assert response.output_text == "Checking."
    call = response.output[2]
    assert call.type == "function_call" and (call.call_id, call.arguments) == ("call_1", '{"city":"Paris"}')
    assert response.usage is not None
    usage = response.usage
    assert (usage.input_tokens, usage.output_tokens, usage.total_tokens) == (30, 12, 42)
    assert response.usage.input_tokens_details.cached_tokens == 8
    assert response.usage.output_tokens_details.reasoning_tokens == 4
    assert data["error"] is None and data["incomplete_details"] is None and data["tools"] == []


@pytest.mark.parametrize(("finish", "status", "reason"), [
    ("max_tokens", "incomplete", "max_output_tokens"),
    ("content_filter", "incomplete", "content_filter"),
    ("stop_sequence", "completed", None),
    ("error", "failed", None),
])
def test_render_response_status(finish: Any, status: str, reason: str | None) -> None:
    reply = ChatResponse(id="x", model="m", content=[Text("partial")], finish_reason=finish)
    response = Response.model_validate(orjson.loads(dialect.render_response(reply, "m", "r2")))
    assert response.status == status
    assert (response.incomplete_details.reason if response.incomplete_details else None) == reason
    assert (response.error is not None) == (status == "failed")


def test_render_response_echoes_request() -> None:
    req = dialect.parse_request(body(
        input="x", tools=[WEATHER_TOOL], tool_choice="required", parallel_tool_calls=False, temperature=0.5,
        max_output_tokens=99, reasoning={"effort": "high"},
        text={"format": {"type": "json_schema", "name": "w", "schema": {"type": "object"}, "strict": True}},
    ))
    data = orjson.loads(dialect.render_response(REPLY, "gpt-test", "r3", request=req))
    response = Response.model_validate(data)
    assert response.tools[0].type == "function" and response.tools[0].name == "get_weather"
    assert response.tool_choice == "required"
    assert (response.parallel_tool_calls, response.temperature) == (False, 0.5)
    assert response.max_output_tokens == 99 and response.reasoning and response.reasoning.effort == "high"
    assert data["text"]["format"]["type"] == "json_schema" and data["text"]["format"]["name"] == "w"


# --- stream ----------------------------------------------------------------------------------

TEXT_AND_TOOL: list[StreamEvent] = [
    MessageStart(id="up-1", model="upstream", input_tokens=30),
    BlockStart(0, "text"),
    TextDelta(0, "Let me "),
    TextDelta(0, "check."),
    BlockStop(0),
    BlockStart(1, "tool_call", "call_1", "get_weather"),
    ToolArgsDelta(1, '{"city":'),
    ToolArgsDelta(1, '"Paris"}'),
    BlockStop(1),
    UsageEvent(Usage(input_tokens=30, output_tokens=12, cached_input_tokens=8)),
    MessageStop("tool_use"),
]
REASONING_TRUNCATED: list[StreamEvent] = [
    MessageStart(id="up-2", model="upstream"),
    BlockStart(0, "reasoning"),
    ReasoningDelta(0, "Think "),
    ReasoningDelta(0, "hard."),
    ReasoningDelta(0, signature="c2ln"),
    BlockStop(0),
    BlockStart(1, "text"),
    TextDelta(1, "The answer is"),
    BlockStop(1),
    UsageEvent(Usage(input_tokens=5, output_tokens=16, reasoning_tokens=9)),
    MessageStop("max_tokens"),
]
ERROR_MIDSTREAM: list[StreamEvent] = [
    MessageStart(id="up-3", model="upstream"),
    BlockStart(0, "text"),
    TextDelta(0, "Partial"),
    StreamError(ErrorInfo(kind="upstream_unavailable", message="upstream went away", status=503)),
    TextDelta(0, "ignored after the terminal event"),
]
CASES = {"text_tool_usage": TEXT_AND_TOOL, "reasoning_incomplete": REASONING_TRUNCATED,
         "error_midstream": ERROR_MIDSTREAM}


def render_all(events: list[StreamEvent], request_id: str = "r1") -> list[tuple[str | None, bytes]]:
    renderer = openai_responses_render.StreamRenderer("gpt-test", request_id, include_usage=False)
    return [pair for event in events for pair in renderer.render(event)]


def payloads(pairs: list[tuple[str | None, bytes]]) -> list[dict[str, Any]]:
    out = []
    for name, data in pairs:
        payload = orjson.loads(data)
        assert name == payload["type"]
        EVENTS.validate_python(payload)  # every event matches the SDK's typed union
        out.append(payload)
    return out


def test_stream_text_and_tool_call_order() -> None:
    events = payloads(render_all(TEXT_AND_TOOL))
    assert [e["type"] for e in events] == [
        "response.created", "response.in_progress",
        "response.output_item.added", "response.content_part.added",
        "response.output_text.delta", "response.output_text.delta",
        "response.output_text.done", "response.content_part.done", "response.output_item.done",
        "response.output_item.added",
        "response.function_call_arguments.delta", "response.function_call_arguments.delta",
        "response.function_call_arguments.done", "response.output_item.done",
        "response.completed",
    ]
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert events[0]["response"]["status"] == "in_progress" and events[0]["response"]["output"] == []
    for e in events[2:9]:
        assert (e.get("item_id") or e["item"]["id"], e["output_index"]) == ("msg_r1_0", 0)
    for e in events[9:14]:
        assert (e.get("item_id") or e["item"]["id"], e["output_index"]) == ("fc_r1_1", 1)
    assert events[6]["text"] == "Let me check."
    assert events[12]["arguments"] == '{"city":"Paris"}' and events[12]["name"] == "get_weather"
    final = Response.model_validate(events[-1]["response"])
    assert final.status == "completed" and final.output_text == "Let me check."
    assert [i.id for i in final.output] == ["msg_r1_0", "fc_r1_1"]
    assert final.usage is not None and final.usage.total_tokens == 42
    assert events[-1]["response"]["output"][0] == events[8]["item"]  # done item == final item


def test_stream_max_tokens_is_incomplete() -> None:
    events = payloads(render_all(REASONING_TRUNCATED))
    assert events[-1]["type"] == "response.incomplete"
    final = Response.model_validate(events[-1]["response"])
    assert final.incomplete_details is not None and final.incomplete_details.reason == "max_output_tokens"
    reasoning = final.output[0]
    assert reasoning.type == "reasoning" and reasoning.summary[0].text == "Think hard."
    assert reasoning.encrypted_content and reasoning.encrypted_content.startswith("sluice.")


def test_stream_error_then_failed() -> None:
    events = payloads(render_all(ERROR_MIDSTREAM))
    assert [e["type"] for e in events[-2:]] == ["error", "response.failed"]
    assert events[-2]["message"] == "upstream went away" and events[-2]["code"] == "server_error"
    failed = Response.model_validate(events[-1]["response"])
    assert failed.status == "failed" and failed.error is not None
    assert failed.output[0].type == "message" and failed.output[0].status == "incomplete"


def test_stream_error_first_still_opens_with_created() -> None:
    events = payloads(render_all([StreamError(ErrorInfo(kind="rate_limited", message="busy", status=429))]))
    assert [e["type"] for e in events] == [
        "response.created", "response.in_progress", "error", "response.failed"]


def test_complete_replays_as_a_full_stream(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(openai_responses_render, "_now", lambda: 1_700_000_000)
    events = payloads(render_all([Complete(REPLY)]))
    assert events[0]["type"] == "response.created" and events[-1]["type"] == "response.completed"
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert events[-1]["response"] == orjson.loads(dialect.render_response(REPLY, "gpt-test", "r1"))


def to_sse(pairs: list[tuple[str | None, bytes]]) -> bytes:
    return b"".join(frame(data, name) for name, data in pairs)


@pytest.mark.parametrize("case", sorted(CASES))
def test_stream_golden(case: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(openai_responses_render, "_now", lambda: 1_700_000_000)
    rendered = to_sse(render_all(CASES[case], request_id="golden"))
    path = GOLDEN / f"{case}.sse"
    if os.environ.get("SLUICE_UPDATE_GOLDEN") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(rendered)
    assert rendered == path.read_bytes(), f"{path} is stale; rerun with SLUICE_UPDATE_GOLDEN=1"
    frames = SseParser().feed(rendered)  # and it parses back as SSE
    assert [f.event for f in frames] == [orjson.loads(f.data)["type"] for f in frames]


# --- the official SDK end to end -------------------------------------------------------------

SDK_REPLY = ChatResponse(
    id="up-9", model="upstream", finish_reason="tool_use", usage=Usage(input_tokens=11, output_tokens=7),
    content=[Reasoning(text="Look it up.", signature="c2ln", provider="anthropic"),
             Text("It is sunny in Paris."),
             ToolCall(id="call_7", name="get_weather", arguments='{"city": "Paris", "unit": "c"}')],
)
SDK_STREAM: list[StreamEvent] = [
    MessageStart(id="up-9", model="upstream"),
    BlockStart(0, "reasoning"), ReasoningDelta(0, "Look "), ReasoningDelta(0, "it up."), BlockStop(0),
    BlockStart(1, "text"), TextDelta(1, "It is sunny"), TextDelta(1, " in Paris."), BlockStop(1),
    BlockStart(2, "tool_call", "call_7", "get_weather"),
    ToolArgsDelta(2, '{"city": "Paris",'), ToolArgsDelta(2, ' "unit": "c"}'), BlockStop(2),
    UsageEvent(Usage(input_tokens=11, output_tokens=7)),
    MessageStop("tool_use"),
]


async def _responses_endpoint(request: Request) -> HttpResponse:
    raw = await request.body()
    try:
        parsed = dialect.parse_request(raw)
    except GatewayError as err:
        status, payload, headers = dialect.render_error(err)
        return HttpResponse(payload, status, headers, media_type="application/json")
    request.app.state.seen.append(parsed)
    if not parsed.stream:
        return HttpResponse(dialect.render_response(SDK_REPLY, parsed.model, "sdk", request=parsed),
                            media_type="application/json")
    script = ERROR_MIDSTREAM if parsed.model == "fail" else SDK_STREAM
    renderer = openai_responses_render.StreamRenderer(parsed.model, "sdk", include_usage=True, request=parsed)

    async def frames() -> Any:
        for event in script:
            for name, data in renderer.render(event):
                yield frame(data, name)

    return StreamingResponse(frames(), media_type="text/event-stream")


@pytest.fixture(scope="module")
def sdk_server() -> Iterator[tuple[openai.OpenAI, list[ChatRequest]]]:
    app = Starlette(routes=[Route("/v1/responses", _responses_endpoint, methods=["POST"])])
    app.state.seen = []
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)  # bound before the server starts: connections queue, so no startup wait
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    port = sock.getsockname()[1]
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="x", max_retries=0,
                           _strict_response_validation=True)
    try:
        yield client, app.state.seen
    finally:
        client.close()
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


SDK_INPUT: Any = [
    {"role": "user", "content": [{"type": "input_text", "text": "Weather?"},
                                 {"type": "input_image", "image_url": "https://example.com/sky.png"}]},
    {"type": "function_call", "call_id": "call_0", "name": "get_weather", "arguments": '{"city":"Rome"}'},
    {"type": "function_call_output", "call_id": "call_0", "output": "rainy"},
]


def test_sdk_create(sdk_server: tuple[openai.OpenAI, list[ChatRequest]]) -> None:
    client, seen = sdk_server
    response = client.responses.create(model="gpt-test", input=SDK_INPUT, instructions="Be brief.",
                                       tools=[WEATHER_TOOL], store=False)  # type: ignore[list-item]
    assert response.output_text == "It is sunny in Paris."
    reasoning, call = response.output[0], response.output[2]
    assert reasoning.type == "reasoning" and reasoning.summary[0].text == "Look it up."
    assert call.type == "function_call" and call.call_id == "call_7"
    assert call.arguments == '{"city": "Paris", "unit": "c"}'
    assert response.tools[0].type == "function" and response.tools[0].name == "get_weather"
    parsed = seen[-1]
    assert parsed.system == [Text("Be brief.")] and parsed.tools[0].name == "get_weather"
    assert parsed.messages[0].content[1] == Image(url="https://example.com/sky.png")
    assert parsed.messages[1].content == [
        ToolCall(id="call_0", name="get_weather", arguments='{"city":"Rome"}')]


def test_sdk_create_stream(sdk_server: tuple[openai.OpenAI, list[ChatRequest]]) -> None:
    client, _ = sdk_server
    events = list(client.responses.create(model="gpt-test", input="Weather?", stream=True))
    assert events[0].type == "response.created" and events[-1].type == "response.completed"
    assert [e.sequence_number for e in events] == list(range(len(events)))
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    args = "".join(e.delta for e in events if e.type == "response.function_call_arguments.delta")
    assert text == "It is sunny in Paris." and args == '{"city": "Paris", "unit": "c"}'
    final = events[-1].response
    assert final.output_text == text and final.usage is not None and final.usage.total_tokens == 18


def test_sdk_stream_helper(sdk_server: tuple[openai.OpenAI, list[ChatRequest]]) -> None:
    client, _ = sdk_server
    with client.responses.stream(model="gpt-test", input="Weather?", tools=[WEATHER_TOOL]) as stream:  # type: ignore[list-item]
        events = list(stream)
        final = stream.get_final_response()
    snapshots = [e.snapshot for e in events if e.type == "response.output_text.delta"]
    thought = [e.delta for e in events if e.type == "response.reasoning_summary_text.delta"]
    assert thought == ["Look ", "it up."]
    assert snapshots == ["It is sunny", "It is sunny in Paris."]
    assert final.output_text == "It is sunny in Paris."
    call = final.output[2]
    assert call.type == "function_call" and call.name == "get_weather"
    assert call.arguments == '{"city": "Paris", "unit": "c"}' and call.id == "fc_sdk_2"


def test_sdk_stream_error_surfaces(sdk_server: tuple[openai.OpenAI, list[ChatRequest]]) -> None:
    client, _ = sdk_server
    with client.responses.stream(model="fail", input="x") as stream:
        kinds = [e.type for e in stream]
        assert kinds[-2:] == ["error", "response.failed"]
        with pytest.raises(RuntimeError, match=r"response\.completed"):
            stream.get_final_response()


def test_sdk_unsupported_field_is_a_400(sdk_server: tuple[openai.OpenAI, list[ChatRequest]]) -> None:
    client, _ = sdk_server
    with pytest.raises(openai.BadRequestError) as info:
        client.responses.create(model="gpt-test", input="x", conversation="conv_1")
    assert info.value.param == "conversation" and info.value.code == "unsupported_parameter"
