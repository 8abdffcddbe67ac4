"""Gemini generateContent dialect: client side, upstream side, golden streams, and the google-genai SDK.

Regenerate the golden `tests/fixtures/gemini/<case>.events.json` files with SLUICE_UPDATE_GOLDEN=1.
"""

from __future__ import annotations

import os
import random
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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
    Document,
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
from shared.protocols import gemini, gemini_upstream
from shared.protocols.sse import SseFrame, SseParser

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "gemini"
CASES = sorted(p.stem for p in FIXTURES.glob("*.sse"))


def _parse(body: dict[str, Any], stream: bool = False) -> ChatRequest:
    return gemini.parse_request(orjson.dumps(body), "gemini-test", stream)


def _error(body: dict[str, Any]) -> GatewayError:
    with pytest.raises(GatewayError) as info:
        _parse(body)
    return info.value


# --- client side: parse_request --------------------------------------------------------------

CAMEL = {
    "systemInstruction": {"parts": [{"text": "You are terse."}]},
    "contents": [{"role": "user", "parts": [
        {"text": "Weather in Paris?"}, {"inlineData": {"mimeType": "image/png", "data": "iVBORw0K"}},
        {"fileData": {"mimeType": "application/pdf", "fileUri": "https://example.com/a.pdf"}}]}],
    "tools": [{"functionDeclarations": [
        {"name": "get_weather", "description": "Weather by city",
         "parametersJsonSchema": {"type": "object", "properties": {"city_name": {"type": "string"}},
                                  "required": ["city_name"], "additionalProperties": False}}]}],
    "toolConfig": {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}},
    "generationConfig": {"temperature": 0.2, "topP": 0.9, "topK": 40, "candidateCount": 2,
                         "maxOutputTokens": 512, "stopSequences": ["END"], "seed": 7,
                         "responseMimeType": "application/json",
                         "responseJsonSchema": {"type": "object",
                                                "properties": {"snake_key": {"type": "string"}}},
                         "thinkingConfig": {"thinkingBudget": 1024, "includeThoughts": True}},
}
SNAKE = {
    "system_instruction": {"parts": [{"text": "You are terse."}]},
    "contents": [{"role": "user", "parts": [
        {"text": "Weather in Paris?"}, {"inline_data": {"mime_type": "image/png", "data": "iVBORw0K"}},
        {"file_data": {"mime_type": "application/pdf", "file_uri": "https://example.com/a.pdf"}}]}],
    "tools": [{"function_declarations": [
        {"name": "get_weather", "description": "Weather by city",
         "parameters_json_schema": {"type": "object", "properties": {"city_name": {"type": "string"}},
                                    "required": ["city_name"], "additionalProperties": False}}]}],
    "tool_config": {"function_calling_config": {"mode": "ANY", "allowed_function_names": ["get_weather"]}},
    "generation_config": {"temperature": 0.2, "top_p": 0.9, "top_k": 40.0, "candidate_count": 2,
                          "max_output_tokens": 512, "stop_sequences": ["END"], "seed": 7,
                          "response_mime_type": "application/json",
                          "response_json_schema": {"type": "object",
                                                   "properties": {"snake_key": {"type": "string"}}},
                          "thinking_config": {"thinking_budget": 1024, "include_thoughts": True}},
}


def test_parse_request_camel_case_fields() -> None:
    req = _parse(CAMEL, stream=True)
    assert req.model == "gemini-test" and req.stream and req.include_usage
    assert req.system == [Text("You are terse.")]
    assert req.messages == [Message(role="user", content=[
        Text("Weather in Paris?"), Image(data="iVBORw0K", media_type="image/png"),
        Document(url="https://example.com/a.pdf", media_type="application/pdf")])]
    assert req.tools == [Tool(name="get_weather", description="Weather by city", parameters={
        "type": "object", "properties": {"city_name": {"type": "string"}}, "required": ["city_name"],
        "additionalProperties": False})]
    assert req.tool_choice == ToolChoice(mode="tool", name="get_weather")
    assert req.response_format == ResponseFormat(
        type="json_schema", schema={"type": "object", "properties": {"snake_key": {"type": "string"}}})
    assert (req.temperature, req.top_p, req.top_k, req.n, req.max_tokens, req.stop, req.seed) == (
        0.2, 0.9, 40, 2, 512, ["END"], 7)
    assert req.reasoning_effort == "low"


def test_parse_request_snake_case_equals_camel_case() -> None:
    assert _parse(SNAKE) == _parse(CAMEL)


def test_user_keys_inside_args_responses_and_schemas_are_untouched() -> None:
    req = _parse({"contents": [
        {"role": "user", "parts": [{"text": "go"}]},
        {"role": "model", "parts": [
            {"function_call": {"name": "f", "args": {"snake_arg": {"inner_key": 1}}}}]},
        {"role": "user", "parts": [{"function_response": {"name": "f", "response": {"result_value": 2}}}]},
    ], "tools": [{"function_declarations": [{"name": "f", "parameters": {
        "type": "OBJECT", "properties": {"snake_arg": {"type": "OBJECT", "nullable": True}}}}]}]})
    call = req.messages[1].content[0]
    result = req.messages[2].content[0]
    assert isinstance(call, ToolCall) and orjson.loads(call.arguments) == {"snake_arg": {"inner_key": 1}}
    assert isinstance(result, ToolResult) and orjson.loads(result.content) == {"result_value": 2}
    assert req.tools[0].parameters == {
        "type": "object", "properties": {"snake_arg": {"type": ["object", "null"]}}}


def test_openapi_schema_is_lowercased_into_json_schema() -> None:
    params = {"type": "OBJECT", "propertyOrdering": ["tags", "max_items"], "required": ["tags"],
              "properties": {
        "tags": {"type": "ARRAY", "items": {"type": "STRING", "enum": ["a", "b"]}, "max_items": "3",
                 "minItems": "1"},
        "max_items": {"anyOf": [{"type": "INTEGER"}, {"type": "NUMBER"}], "nullable": True, "example": 2}}}
    req = _parse({"contents": [{"parts": [{"text": "x"}]}],
                  "tools": [{"functionDeclarations": [{"name": "f", "parameters": params}]}],
                  "generationConfig": {
                      "responseSchema": {"type": "STRING", "format": "enum", "enum": ["x"]}}})
    assert req.tools[0].parameters == {"type": "object", "required": ["tags"], "properties": {
        "tags": {"type": "array", "items": {"type": "string", "enum": ["a", "b"]},
                 "maxItems": 3, "minItems": 1},
        "max_items": {"anyOf": [{"type": "integer"}, {"type": "number"}, {"type": "null"}], "examples": [2]}}}
    assert req.response_format == ResponseFormat(type="json_schema",
                                                 schema={"type": "string", "format": "enum", "enum": ["x"]})


@pytest.mark.parametrize(("config", "expected"), [
    ({"mode": "AUTO"}, ToolChoice(mode="auto")),
    ({"mode": "NONE"}, ToolChoice(mode="none")),
    ({"mode": "ANY"}, ToolChoice(mode="required")),
    ({"mode": "ANY", "allowedFunctionNames": ["a", "b"]}, ToolChoice(mode="required")),
    ({"mode": "ANY", "allowedFunctionNames": ["a"]}, ToolChoice(mode="tool", name="a")),
    ({"mode": "VALIDATED"}, ToolChoice(mode="auto")),
    ({}, None),
])
def test_function_calling_modes(config: dict[str, Any], expected: ToolChoice | None) -> None:
    req = _parse({"contents": [{"parts": [{"text": "x"}]}], "toolConfig": {"functionCallingConfig": config}})
    assert req.tool_choice == expected


@pytest.mark.parametrize(("thinking", "effort"), [
    ({"thinkingBudget": 0}, "none"), ({"thinkingBudget": 128}, "minimal"), ({"thinkingBudget": 1000}, "low"),
    ({"thinkingBudget": 8192}, "medium"), ({"thinkingBudget": 30000}, "high"), ({"thinkingBudget": -1}, None),
    ({"thinkingLevel": "HIGH"}, "high"), ({"includeThoughts": True}, None),
])
def test_thinking_config_to_effort(thinking: dict[str, Any], effort: str | None) -> None:
    req = _parse({"contents": [{"parts": [{"text": "x"}]}], "generationConfig": {"thinkingConfig": thinking}})
    assert req.reasoning_effort == effort


def test_json_mime_type_without_schema_is_json_object() -> None:
    req = _parse({"contents": [{"parts": [{"text": "x"}]}],
                  "generationConfig": {"responseMimeType": "application/json"}})
    assert req.response_format == ResponseFormat(type="json_object")
    assert _parse({"contents": [{"parts": [{"text": "x"}]}]}).response_format is None


def test_tool_ids_are_synthesized_and_paired_by_name() -> None:
    req = _parse({"contents": [
        {"role": "user", "parts": [{"text": "weather and time?"}]},
        {"role": "model", "parts": [
            {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}, "thoughtSignature": "c2ln"},
            {"functionCall": {"name": "get_weather", "args": {"city": "Tokyo"}}},
            {"functionCall": {"name": "get_time", "args": {}}}]},
        {"role": "user", "parts": [  # answered out of order, without ids
            {"functionResponse": {"name": "get_time", "response": {"result": "noon"}}},
            {"functionResponse": {"name": "get_weather", "response": {"result": "rain"}}},
            {"functionResponse": {"name": "get_weather", "response": {"result": "sun"}}}]},
        {"role": "model", "parts": [{"functionCall": {"name": "get_time", "id": "given", "args": {}}}]},
        {"role": "user", "parts": [{"functionResponse": {"name": "get_time", "response": {"r": 1}}}]},
    ]})
    calls = [p for m in req.messages for p in m.content if isinstance(p, ToolCall)]
    results = [p for m in req.messages for p in m.content if isinstance(p, ToolResult)]
    assert [(c.id, c.name) for c in calls] == [
        ("call_1_0", "get_weather"), ("call_1_1", "get_weather"), ("call_1_2", "get_time"),
        ("given", "get_time")]
    assert calls[0].signature == "c2ln" and calls[1].signature is None
    assert [(r.tool_call_id, r.name, r.content) for r in results] == [
        ("call_1_2", "get_time", '{"result":"noon"}'), ("call_1_0", "get_weather", '{"result":"rain"}'),
        ("call_1_1", "get_weather", '{"result":"sun"}'), ("given", "get_time", '{"r":1}')]


def test_thoughts_and_signatures_in_history() -> None:
    req = _parse({"contents": [
        {"role": "user", "parts": [{"text": "hi"}]},
        {"role": "model", "parts": [{"text": "pondering", "thought": True, "thoughtSignature": "dA=="},
                                    {"text": "Hello", "thoughtSignature": "c2ln"}, {"text": ""}]},
        {"role": "user", "parts": [{"text": "again"}]}]})
    assert req.messages[1].content == [Reasoning(text="pondering", signature="dA=="), Text("Hello"),
                                       Reasoning(signature="c2ln")]


@pytest.mark.parametrize(("body", "param"), [
    ({"contents": []}, "contents"),
    ({"contents": [{"parts": [{"text": "x"}]}], "generationConfig": {"temperature": 3}},
     "generationConfig.temperature"),
    ({"contents": [{"parts": [{"text": "x"}]}], "generation_config": {"max_output_tokens": 0}},
     "generationConfig.maxOutputTokens"),
    ({"contents": [{"role": "system", "parts": [{"text": "x"}]}]}, "contents[0].role"),
    ({"contents": [{"role": "user", "parts": []}]}, "contents[0].parts"),
    ({"contents": [{"role": "user", "parts": [{}]}]}, "contents[0].parts[0]"),
    ({"contents": [{"role": "user", "parts": [{"text": 5}]}]}, "contents[0].parts[0].text"),
    ({"contents": [{"role": "user", "parts": [{"functionResponse": {"name": "f", "response": {}}}]}]},
     "contents[0].parts[0].functionResponse.name"),
    ({"contents": [{"role": "user", "parts": [{"functionCall": {"name": "f"}}]}]},
     "contents[0].parts[0].functionCall"),
    ({"contents": [{"parts": [{"text": "x"}]}], "toolConfig": {"functionCallingConfig": {"mode": "SOME"}}},
     "toolConfig.functionCallingConfig.mode"),
    ({"contents": [{"parts": [{"text": "x"}]}], "tools": [{"googleSearch": {}}]}, "tools[0].googleSearch"),
    ({"contents": [{"parts": [{"text": "x"}]}], "generationConfig": {"responseMimeType": "text/x.enum"}},
     "generationConfig.responseMimeType"),
])
def test_invalid_requests_name_the_field(body: dict[str, Any], param: str) -> None:
    err = _error(body)
    assert err.status == 400 and err.kind in ("invalid_request", "unsupported")
    assert err.param == param


def test_invalid_json_body() -> None:
    with pytest.raises(GatewayError) as info:
        gemini.parse_request(b"{nope", "m", False)
    assert info.value.kind == "invalid_request"


# --- client side: rendering ------------------------------------------------------------------

RESPONSE = ChatResponse(
    id="r1", model="upstream-model", finish_reason="tool_use",
    content=[Reasoning(text="thinking", provider="anthropic"), Text("Let me check."),
             Reasoning(signature="c2ln"),
             ToolCall(id="call_a", name="get_weather", arguments='{"city":"Paris"}'),
             ToolCall(id="call_b", name="broken", arguments='{"city":')],
    usage=Usage(input_tokens=100, output_tokens=30, cached_input_tokens=40, reasoning_tokens=10),
)


def test_render_response() -> None:
    data = orjson.loads(gemini.render_response(RESPONSE, "gemini-test", "req-1"))
    assert data == {
        "candidates": [{"content": {"role": "model", "parts": [
            {"text": "thinking", "thought": True},
            {"text": "Let me check."},
            {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}, "id": "call_a"},
             "thoughtSignature": "c2ln"},
            {"functionCall": {"name": "broken", "args": {}, "id": "call_b"}}]},
            "finishReason": "STOP", "index": 0}],
        "usageMetadata": {"promptTokenCount": 100, "candidatesTokenCount": 20, "totalTokenCount": 130,
                          "cachedContentTokenCount": 40, "thoughtsTokenCount": 10},
        "modelVersion": "gemini-test", "responseId": "req-1"}


@pytest.mark.parametrize(("finish", "wire"), [
    ("end_turn", "STOP"), ("stop_sequence", "STOP"), ("max_tokens", "MAX_TOKENS"),
    ("content_filter", "SAFETY"), ("error", "OTHER")])
def test_render_finish_reasons(finish: Any, wire: str) -> None:
    response = ChatResponse(id="r", model="m", content=[Text("x")], finish_reason=finish)
    data = orjson.loads(gemini.render_response(response, "m", "r"))
    assert data["candidates"][0]["finishReason"] == wire


def _rendered(events: list[StreamEvent]) -> list[dict[str, Any]]:
    renderer = gemini.StreamRenderer("gemini-test", "req-2", include_usage=False)
    out = [item for event in events for item in renderer.render(event)]
    assert all(name is None for name, _ in out)
    return [orjson.loads(data) for _, data in out]


def test_stream_renderer_text_tool_call_and_final_chunk() -> None:
    chunks = _rendered([
        MessageStart("u1", "upstream"), BlockStart(0, "text"), TextDelta(0, "Hel"), TextDelta(0, "lo"),
        BlockStop(0), BlockStart(1, "reasoning"), ReasoningDelta(1, signature="c2ln"), BlockStop(1),
        BlockStart(2, "tool_call", "call_a", "get_weather"), ToolArgsDelta(2, '{"ci'),
        ToolArgsDelta(2, 'ty":"Paris"}'),
        BlockStop(2), UsageEvent(Usage(input_tokens=5, output_tokens=7)), MessageStop("tool_use")])
    parts = [c["candidates"][0]["content"]["parts"] for c in chunks]
    assert parts == [[{"text": "Hel"}], [{"text": "lo"}],
                     [{"functionCall": {"name": "get_weather", "args": {"city": "Paris"}, "id": "call_a"},
                       "thoughtSignature": "c2ln"}],
                     [{"text": ""}]]
    assert all(c["responseId"] == "req-2" and c["modelVersion"] == "gemini-test" for c in chunks)
    assert "finishReason" not in chunks[0]["candidates"][0] and "usageMetadata" not in chunks[0]
    assert chunks[-1]["candidates"][0]["finishReason"] == "STOP"
    assert chunks[-1]["usageMetadata"] == {"promptTokenCount": 5, "candidatesTokenCount": 7,
                                           "totalTokenCount": 12}


def test_stream_renderer_thoughts_keep_their_signature() -> None:
    chunks = _rendered([
        BlockStart(0, "reasoning"), ReasoningDelta(0, "hmm"), ReasoningDelta(0, signature="dA=="),
        BlockStop(0), BlockStart(1, "text"), TextDelta(1, "ok"), BlockStop(1), MessageStop("end_turn")])
    assert [c["candidates"][0]["content"]["parts"] for c in chunks] == [
        [{"text": "hmm", "thought": True}], [{"text": "", "thought": True, "thoughtSignature": "dA=="}],
        [{"text": "ok"}], [{"text": ""}]]


def test_stream_renderer_error_and_complete() -> None:
    info = ErrorInfo(kind="upstream_unavailable", message="overloaded", status=503)
    assert _rendered([BlockStart(0, "text"), TextDelta(0, "a"), StreamError(info)])[-1] == {
        "error": {"code": 503, "message": "overloaded", "status": "UNAVAILABLE"}}
    replay = _rendered([Complete(RESPONSE)])
    assert replay == [orjson.loads(gemini.render_response(RESPONSE, "gemini-test", "req-2"))]


def test_render_error_rate_limited_has_retry_info() -> None:
    status, body, headers = gemini.render_error(GatewayError("rate_limited", "slow down", retry_after=1.5))
    assert status == 429 and headers == {"retry-after": "2"}
    assert orjson.loads(body) == {"error": {
        "code": 429, "message": "slow down", "status": "RESOURCE_EXHAUSTED",
        "details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "1.5s"}]}}


@pytest.mark.parametrize(("kind", "status", "name"), [
    ("invalid_request", 400, "INVALID_ARGUMENT"), ("unauthenticated", 401, "UNAUTHENTICATED"),
    ("permission_denied", 403, "PERMISSION_DENIED"), ("not_found", 404, "NOT_FOUND"),
    ("internal", 500, "INTERNAL"), ("upstream_auth", 502, "INTERNAL"),
    ("upstream_unavailable", 503, "UNAVAILABLE"), ("upstream_timeout", 504, "DEADLINE_EXCEEDED")])
def test_render_error_statuses(kind: str, status: int, name: str) -> None:
    code, body, headers = gemini.render_error(GatewayError(kind, "boom"))
    assert code == status and headers == {}
    assert orjson.loads(body)["error"] == {"code": status, "message": "boom", "status": name}


def test_render_error_names_the_field() -> None:
    _, body, _ = gemini.render_error(GatewayError("invalid_request", "bad", param="generationConfig.topP"))
    assert orjson.loads(body)["error"]["details"] == [{"@type": "type.googleapis.com/google.rpc.BadRequest",
                                                       "fieldViolations": [{"field": "generationConfig.topP",
                                                                            "description": "bad"}]}]


def test_list_models() -> None:
    assert orjson.loads(gemini.list_models(["a"])) == {"models": [{
        "name": "models/a", "baseModelId": "a", "displayName": "a",
        "supportedGenerationMethods": ["generateContent", "streamGenerateContent"]}]}


# --- upstream side: build_request ------------------------------------------------------------


def test_path_names_the_model_once() -> None:
    assert gemini_upstream.path("gemini-2.5-flash", False) == "/v1beta/models/gemini-2.5-flash:generateContent"
    assert gemini_upstream.path("models/gemini-2.5-flash", True) == (
        "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse")


def test_build_request_parallel_results_in_one_user_turn() -> None:
    req = ChatRequest(model="m", system=[Text("Be brief.")], messages=[
        Message(role="user", content=[Text("weather?"), Image(url="data:image/jpeg;base64,AAAA")]),
        Message(role="assistant", content=[
            Text("Checking."), Reasoning(signature="c2ln", provider="gemini"),
            ToolCall(id="t1", name="get_weather", arguments='{"city":"Paris"}'),
            ToolCall(id="t2", name="get_time", arguments="not json")]),
        # results arrive out of order and split over two messages, as some clients send them
        Message(role="user", content=[ToolResult(tool_call_id="t2", content="noon")]),
        Message(role="user", content=[ToolResult(tool_call_id="t1", content='{"temp":21}'), Text("thanks")]),
    ])
    body = gemini_upstream.build_request(req, "gemini-2.5-flash")
    assert body["systemInstruction"] == {"parts": [{"text": "Be brief."}]}
    assert body["contents"] == [
        {"role": "user", "parts": [{"text": "weather?"},
                                   {"inlineData": {"mimeType": "image/jpeg", "data": "AAAA"}}]},
        {"role": "model", "parts": [
            {"text": "Checking."},
            {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}, "thoughtSignature": "c2ln"},
            {"functionCall": {"name": "get_time", "args": {}}}]},
        {"role": "user", "parts": [
            {"functionResponse": {"name": "get_weather", "response": {"temp": 21}}},
            {"functionResponse": {"name": "get_time", "response": {"result": "noon"}}},
            {"text": "thanks"}]},
    ]
    assert "model" not in body and "generationConfig" not in body


def test_build_request_tool_result_name_lookup_fails_loudly() -> None:
    req = ChatRequest(model="m", messages=[
        Message(role="user", content=[ToolResult(tool_call_id="x", content="1")])])
    with pytest.raises(GatewayError) as info:
        gemini_upstream.build_request(req, "m")
    assert info.value.kind == "invalid_request" and info.value.param == "messages[0].content[0].tool_call_id"


@pytest.mark.parametrize(("content", "is_error", "response"), [
    ('{"temp":21}', False, {"temp": 21}), ("[1,2]", False, {"result": [1, 2]}),
    ("plain", False, {"result": "plain"}),
    ("boom", True, {"error": "boom"}), ('{"code":1}', True, {"error": {"code": 1}}),
    ('{"error":"x"}', True, {"error": "x"}), ("", False, {"result": ""})])
def test_build_request_wraps_tool_results(content: str, is_error: bool, response: dict[str, Any]) -> None:
    req = ChatRequest(model="m", messages=[
        Message(role="assistant", content=[ToolCall(id="a", name="f", arguments="{}")]),
        Message(role="user", content=[ToolResult(tool_call_id="a", content=content, is_error=is_error)])])
    assert gemini_upstream.build_request(req, "m")["contents"][1]["parts"][0]["functionResponse"] == {
        "name": "f", "response": response}


def test_build_request_parameters() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "string"}}, "additionalProperties": False}
    req = ChatRequest(
        model="m", messages=[Message(role="user", content=[Image(url="https://x.test/cat.png?s=1")])],
        tools=[Tool(name="f", parameters=schema, description="d"), Tool(name="g")],
        tool_choice=ToolChoice(mode="tool", name="f"), parallel_tool_calls=False,
        response_format=ResponseFormat(type="json_schema", name="out", schema=schema),
        max_tokens=100, temperature=0.5, top_p=0.8, top_k=20, stop=["END"], n=2, seed=3,
        reasoning_effort="medium", stream=True, user="u1")
    body = gemini_upstream.build_request(req, "m")
    assert body["contents"] == [{"role": "user", "parts": [{"fileData": {"fileUri": "https://x.test/cat.png?s=1",
                                                                          "mimeType": "image/png"}}]}]
    assert body["tools"] == [{"functionDeclarations": [
        {"name": "f", "description": "d", "parametersJsonSchema": schema}, {"name": "g"}]}]
    assert body["toolConfig"] == {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["f"]}}
    assert body["generationConfig"] == {
        "temperature": 0.5, "topP": 0.8, "topK": 20, "maxOutputTokens": 100, "seed": 3,
        "stopSequences": ["END"],
        "candidateCount": 2, "responseMimeType": "application/json", "responseJsonSchema": schema,
        "thinkingConfig": {"thinkingBudget": 8192}}
    assert set(body) == {"contents", "tools", "toolConfig", "generationConfig"}  # no parallel/user/stream


@pytest.mark.parametrize(("mode", "wire"), [("auto", "AUTO"), ("none", "NONE"), ("required", "ANY")])
def test_build_request_tool_choice(mode: Any, wire: str) -> None:
    req = ChatRequest(model="m", messages=[Message(role="user", content=[Text("x")])],
                      tool_choice=ToolChoice(mode=mode))
    assert gemini_upstream.build_request(req, "m")["toolConfig"] == {"functionCallingConfig": {"mode": wire}}


def test_build_request_reasoning_replay_rules() -> None:
    req = ChatRequest(model="m", messages=[
        Message(role="user", content=[Text("q")]),
        Message(role="assistant", content=[
            Reasoning(text="claude thinks", signature="YW50", provider="anthropic"),
            Reasoning(text="gemini thinks", signature="dA==", provider="gemini"),
            Text("answer"), Reasoning(signature="c2ln", provider="gemini")]),
        Message(role="user", content=[Text("more")])])
    assert gemini_upstream.build_request(req, "m")["contents"][1]["parts"] == [
        {"text": "gemini thinks", "thought": True, "thoughtSignature": "dA=="},
        {"text": "answer", "thoughtSignature": "c2ln"}]


def test_gemini_history_round_trips_through_the_internal_model() -> None:
    contents = [
        {"role": "user", "parts": [{"text": "weather?"}]},
        {"role": "model", "parts": [
            {"text": "plan", "thought": True, "thoughtSignature": "dA=="},
            {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}, "thoughtSignature": "c2ln"},
            {"functionCall": {"name": "get_weather", "args": {"city": "Rome"}}}]},
        {"role": "user", "parts": [
            {"functionResponse": {"name": "get_weather", "response": {"result": {"temp": 21}}}},
            {"functionResponse": {"name": "get_weather", "response": {"result": {"temp": 25}}}}]},
        {"role": "model", "parts": [{"text": "Warm.", "thoughtSignature": "ZW5k"}]},
    ]
    req = _parse({"contents": contents})
    assert gemini_upstream.build_request(req, "m")["contents"] == contents


# --- upstream side: responses and errors -----------------------------------------------------


def test_parse_response_tool_calls_and_usage() -> None:
    body = orjson.dumps({"candidates": [{"content": {"role": "model", "parts": [
        {"text": "hmm", "thought": True},
        {"text": "Checking."},
        {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}, "thoughtSignature": "c2ln"},
        {"functionCall": {"name": "get_time", "id": "given"}}]}, "finishReason": "STOP"}],
        "usageMetadata": {"promptTokenCount": 50, "candidatesTokenCount": 20, "thoughtsTokenCount": 30,
                          "cachedContentTokenCount": 10, "totalTokenCount": 100},
        "modelVersion": "gemini-2.5-flash", "responseId": "abc"})
    resp = gemini_upstream.parse_response(body)
    assert resp.id == "abc" and resp.model == "gemini-2.5-flash" and resp.finish_reason == "tool_use"
    assert resp.content == [
        Reasoning(text="hmm", provider="gemini"), Text("Checking."),
        ToolCall(id="call_abc_0", name="get_weather", arguments='{"city":"Paris"}', signature="c2ln"),
        ToolCall(id="given", name="get_time", arguments="{}")]
    assert resp.usage == Usage(input_tokens=50, output_tokens=50, cached_input_tokens=10, reasoning_tokens=30)


@pytest.mark.parametrize(("reason", "finish"), [
    ("STOP", "end_turn"), ("MAX_TOKENS", "max_tokens"), ("SAFETY", "content_filter"),
    ("RECITATION", "content_filter"), ("BLOCKLIST", "content_filter"),
    ("PROHIBITED_CONTENT", "content_filter"), ("SPII", "content_filter"),
    ("MALFORMED_FUNCTION_CALL", "error"), ("OTHER", "end_turn"), (None, "end_turn")])
def test_parse_response_finish_reasons(reason: str | None, finish: str) -> None:
    candidate: dict[str, Any] = {"content": {"role": "model", "parts": [{"text": "x"}]}}
    if reason:
        candidate["finishReason"] = reason
    assert gemini_upstream.parse_response(orjson.dumps({"candidates": [candidate]})).finish_reason == finish


def test_parse_response_blocked_prompt() -> None:
    resp = gemini_upstream.parse_response(orjson.dumps({
        "promptFeedback": {"blockReason": "SAFETY"},
        "usageMetadata": {"promptTokenCount": 7, "totalTokenCount": 7}}))
    assert resp.content == [] and resp.finish_reason == "content_filter" and resp.usage.input_tokens == 7


def test_parse_response_unreadable_body() -> None:
    with pytest.raises(GatewayError) as info:
        gemini_upstream.parse_response(b"<html>")
    assert info.value.kind == "upstream_unavailable"


RATE_LIMITED = {"error": {"code": 429, "message": "Quota exceeded", "status": "RESOURCE_EXHAUSTED",
                          "details": [
    {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [{"quotaMetric": "m"}]},
    {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "37s"}]}}


@pytest.mark.parametrize(("body", "retry_after"), [
    (orjson.dumps(RATE_LIMITED), 37.0),
    (orjson.dumps([RATE_LIMITED]), 37.0),  # the one-element array some paths send
    (orjson.dumps({"error": {**RATE_LIMITED["error"], "details": [
        {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "1.5s"}]}}), 1.5),
    (orjson.dumps({"error": {"code": 429, "message": "Quota exceeded"}}), None)])
def test_parse_error_reads_retry_delay(body: bytes, retry_after: float | None) -> None:
    err = gemini_upstream.parse_error(429, body, {})
    assert err.kind == "rate_limited" and err.retryable and err.retry_after == retry_after
    assert "Quota exceeded" in err.message


def test_parse_error_other_statuses() -> None:
    bad_key = orjson.dumps({"error": {
        "code": 400, "message": "API key not valid.", "status": "INVALID_ARGUMENT",
        "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID"}]}})
    assert gemini_upstream.parse_error(400, bad_key, {}).kind == "upstream_auth"
    invalid = orjson.dumps({"error": {"code": 400, "message": "bad schema", "status": "INVALID_ARGUMENT"}})
    err = gemini_upstream.parse_error(400, invalid, {})
    assert err.kind == "upstream_rejected" and "bad schema" in err.message
    overloaded = gemini_upstream.parse_error(503, b"Service Unavailable", {"retry-after": "3"})
    assert overloaded.kind == "upstream_unavailable" and overloaded.retryable
    assert overloaded.retry_after == 3.0


# --- upstream side: streams, golden files ----------------------------------------------------

_events = msgspec.json.Decoder(list[StreamEvent])


def _stream(raw: bytes, seed: int) -> list[StreamEvent]:
    rng = random.Random(seed)
    sse, parser = SseParser(), gemini_upstream.StreamParser()
    events: list[StreamEvent] = []
    i = 0
    while i < len(raw):
        size = rng.randint(1, 64)
        for frame in sse.feed(raw[i:i + size]):
            events += parser.feed(frame)
        i += size
    for frame in sse.finish():
        events += parser.feed(frame)
    events += parser.finish()
    assert parser.done
    return events


@pytest.mark.parametrize("case", CASES)
def test_golden_streams(case: str) -> None:
    raw = (FIXTURES / f"{case}.sse").read_bytes()
    events = _stream(raw, seed=0)
    golden = FIXTURES / f"{case}.events.json"
    if os.environ.get("SLUICE_UPDATE_GOLDEN") == "1":
        golden.write_bytes(msgspec.json.format(msgspec.json.encode(events), indent=2) + b"\n")
    assert events == _events.decode(golden.read_bytes())
    for seed in range(1, 20):  # frames split anywhere give the same events
        assert _stream(raw, seed) == events
    terminal = [i for i, e in enumerate(events) if isinstance(e, MessageStop | StreamError)]
    assert terminal == [len(events) - 1]
    if isinstance(events[-1], MessageStop) and any(isinstance(e, UsageEvent) for e in events):
        assert isinstance(events[-2], UsageEvent)


def test_golden_streams_end_as_the_upstream_said() -> None:
    ends = {case: msgspec.json.decode((FIXTURES / f"{case}.events.json").read_bytes(),
                                      type=list[StreamEvent])[-1] for case in CASES}
    assert ends["text"] == MessageStop("end_turn")
    assert ends["function_call"] == MessageStop("tool_use")  # Gemini says STOP for a call
    assert ends["blocked_prompt"] == MessageStop("content_filter")
    assert ends["max_tokens"] == MessageStop("max_tokens")
    overloaded = ends["error_chunk"]
    assert isinstance(overloaded, StreamError) and overloaded.error.retryable  # a 503 in the stream
    cut = ends["ended_early"]
    assert isinstance(cut, StreamError) and cut.error.kind == "upstream_unavailable"


def test_stream_parser_details() -> None:
    parser = gemini_upstream.StreamParser()
    assert parser.feed(SseFrame(b"")) == []
    assert parser.finish() == [StreamError(ErrorInfo(kind="upstream_unavailable", status=503,
                                                     message="the upstream stream ended early"))]
    assert parser.done and parser.finish() == []
    parser = gemini_upstream.StreamParser()
    rate = parser.feed(SseFrame(orjson.dumps(RATE_LIMITED)))
    assert len(rate) == 1 and isinstance(rate[0], StreamError)
    assert rate[0].error.kind == "rate_limited" and rate[0].error.retry_after == 37.0


def test_parsed_stream_renders_back_to_gemini() -> None:
    events = _stream((FIXTURES / "function_call.sse").read_bytes(), seed=0)
    chunks = _rendered(events)
    parts = [p for c in chunks for p in c["candidates"][0]["content"]["parts"] if "functionCall" in p]
    rid = "tTCwaO3mLIWz1dkPyMCx8Q4"
    assert [p["functionCall"] for p in parts] == [
        {"name": "get_weather", "args": {"city": "Paris"}, "id": f"call_{rid}_0"},
        {"name": "get_weather", "args": {"city": "Tokyo", "units": "celsius"}, "id": f"call_{rid}_1"},
        {"name": "get_time", "args": {}, "id": f"call_{rid}_2"}]
    assert parts[0]["thoughtSignature"].startswith("CiQB") and "thoughtSignature" not in parts[1]
    assert chunks[-1]["usageMetadata"] == {"promptTokenCount": 61, "candidatesTokenCount": 36,
                                           "totalTokenCount": 190, "cachedContentTokenCount": 32,
                                           "thoughtsTokenCount": 93}


# --- the official google-genai SDK against rendered output -----------------------------------

SDK_EVENTS: list[StreamEvent] = [
    MessageStart("u", "m"), BlockStart(0, "text"), TextDelta(0, "Hello"), TextDelta(0, ", world"),
    BlockStop(0), BlockStart(1, "tool_call", "call_1", "get_weather"), ToolArgsDelta(1, '{"city":'),
    ToolArgsDelta(1, '"Paris"}'), BlockStop(1), UsageEvent(Usage(input_tokens=3, output_tokens=4)),
    MessageStop("tool_use")]
SDK_RESPONSE = ChatResponse(
    id="r", model="m", finish_reason="tool_use", usage=Usage(input_tokens=3, output_tokens=4),
    content=[Text("Hello, world"),
             ToolCall(id="call_1", name="get_weather", arguments='{"city":"Paris"}', signature="c2ln")])


@pytest.fixture(scope="module")
def sdk_server() -> Iterator[tuple[str, list[tuple[str, str, str]]]]:
    uvicorn = pytest.importorskip("uvicorn")
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response, StreamingResponse
    from starlette.routing import Route

    seen: list[tuple[str, str, str]] = []

    async def handler(request: Request) -> Response:
        seen.append((request.method, request.url.path, request.url.query))
        path = request.url.path
        if request.method == "GET":
            return Response(gemini.list_models(["gemini-test"]), media_type="application/json")
        if "limited" in path:
            limited = GatewayError("rate_limited", "slow down", retry_after=7)
            status, body, headers = gemini.render_error(limited)
            return Response(body, status, headers, media_type="application/json")
        if ":streamGenerateContent" in path:
            renderer = gemini.StreamRenderer("gemini-test", "req-9", include_usage=True)
            events = SDK_EVENTS
            if "broken" in path:
                overloaded = ErrorInfo(kind="upstream_unavailable", message="overloaded", status=503)
                events = [*SDK_EVENTS[:3], StreamError(overloaded)]
            frames = b"".join(b"data: " + data + b"\n\n" for e in events for _, data in renderer.render(e))
            return StreamingResponse(iter([frames]), media_type="text/event-stream")
        body = gemini.render_response(SDK_RESPONSE, "gemini-test", "req-9")
        return Response(body, media_type="application/json")

    app = Starlette(routes=[Route("/{rest:path}", handler, methods=["GET", "POST"])])
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()  # the socket already listens, so requests queue until the server accepts them
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}", seen
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def _client(base_url: str) -> Any:
    genai = pytest.importorskip("google.genai")
    from google.genai import types

    return genai.Client(api_key="x", http_options=types.HttpOptions(base_url=base_url))


def test_sdk_reads_rendered_response(sdk_server: tuple[str, list[tuple[str, str, str]]]) -> None:
    base_url, seen = sdk_server
    client = _client(base_url)  # keep a reference: a collected Client closes its HTTP client
    response = client.models.generate_content(model="gemini-test", contents="weather?")
    assert response.text == "Hello, world"
    (call,) = response.function_calls
    assert (call.name, call.args, call.id) == ("get_weather", {"city": "Paris"}, "call_1")
    assert response.candidates[0].content.parts[1].thought_signature == b"sig"
    assert response.usage_metadata.total_token_count == 7
    assert seen[-1][1].endswith("/models/gemini-test:generateContent")


def test_sdk_reads_rendered_stream(sdk_server: tuple[str, list[tuple[str, str, str]]]) -> None:
    base_url, seen = sdk_server
    client = _client(base_url)
    chunks = list(client.models.generate_content_stream(model="gemini-test", contents="weather?"))
    assert "".join(c.text or "" for c in chunks) == "Hello, world"
    calls = [fc for c in chunks for fc in c.function_calls or []]
    assert [(fc.name, fc.args, fc.id) for fc in calls] == [("get_weather", {"city": "Paris"}, "call_1")]
    assert chunks[-1].candidates[0].finish_reason == "STOP"
    assert chunks[-1].usage_metadata.prompt_token_count == 3
    assert seen[-1][1].endswith("/models/gemini-test:streamGenerateContent") and seen[-1][2] == "alt=sse"


def test_sdk_raises_rendered_errors(sdk_server: tuple[str, list[tuple[str, str, str]]]) -> None:
    from google.genai import errors

    base_url, _ = sdk_server
    client = _client(base_url)
    with pytest.raises(errors.ClientError) as limited:
        client.models.generate_content(model="limited", contents="x")
    assert limited.value.code == 429 and limited.value.status == "RESOURCE_EXHAUSTED"
    assert limited.value.details["error"]["details"][0]["retryDelay"] == "7s"
    with pytest.raises(errors.ServerError) as broken:
        list(client.models.generate_content_stream(model="broken", contents="x"))
    assert broken.value.code == 503 and broken.value.message == "overloaded"


def test_sdk_lists_models_and_records_paths(sdk_server: tuple[str, list[tuple[str, str, str]]]) -> None:
    base_url, seen = sdk_server
    client = _client(base_url)
    assert [m.name for m in client.models.list()] == ["models/gemini-test"]
    # google-genai 3.x talks to /v1/...; the routes must serve /v1beta/... (REST docs, older SDKs) too.
    print("google-genai requested:", sorted({f"{m} {p}" + (f"?{q}" if q else "") for m, p, q in seen}))
