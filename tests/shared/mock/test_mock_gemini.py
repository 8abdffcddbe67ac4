"""The mock provider's Gemini face: generateContent, SSE and array streams, strict turn rules."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from google import genai
from google.genai import types

from shared.mock import MockSettings

pytestmark = pytest.mark.anyio

GENERATE = "/v1beta/models/mock-gemini:generateContent"
STREAM = "/v1beta/models/mock-gemini:streamGenerateContent?alt=sse"
USER = [{"role": "user", "parts": [{"text": "Forecast for Oslo"}]}]
TOOLS = [
    {
        "functionDeclarations": [
            {
                "name": "get_weather",
                "description": "Weather for a city",
                "parameters": {
                    "type": "OBJECT",
                    "properties": {"city": {"type": "STRING"}, "days": {"type": "INTEGER"}},
                    "required": ["city"],
                },
            },
            {
                "name": "get_time",
                "parametersJsonSchema": {"type": "object", "properties": {"tz": {"type": "string"}}},
            },
        ]
    }
]


def body(**extra: Any) -> dict[str, Any]:
    return {"contents": USER, **extra}


def call_turn(*names: str) -> dict[str, Any]:
    return {
        "role": "model",
        "parts": [{"functionCall": {"name": n, "args": {"city": "Oslo"}}} for n in names],
    }


def response_turn(*names: str, response: Any = None) -> dict[str, Any]:
    payload = {"result": "cold"} if response is None else response
    return {"role": "user", "parts": [{"functionResponse": {"name": n, "response": payload}} for n in names]}


def error_of(reply: Any) -> dict[str, Any]:
    error: dict[str, Any] = reply.json()["error"]
    assert error["code"] == reply.status_code
    return error


async def test_generate_content_text(client_for: Any) -> None:
    async with client_for(MockSettings(output_tokens=3)) as (client, _):
        reply = await client.post(GENERATE, json=body(systemInstruction={"parts": [{"text": "Short."}]}))
        v1 = await client.post("/v1/models/other-model:generateContent", json=body())
        capped = (await client.post(GENERATE, json=body(generationConfig={"maxOutputTokens": 2}))).json()
    assert reply.status_code == 200
    data = reply.json()
    candidate = data["candidates"][0]
    assert candidate["content"] == {"role": "model", "parts": [{"text": "Forecast bravo charlie "}]}
    assert candidate["finishReason"] == "STOP"
    prompt = (len("Forecast for Oslo") + len("Short.") + 3) // 4
    assert data["usageMetadata"] == {
        "promptTokenCount": prompt,
        "candidatesTokenCount": 3,
        "totalTokenCount": prompt + 3,
        "cachedContentTokenCount": 0,
        "thoughtsTokenCount": 0,
    }
    assert data["modelVersion"] == "mock-gemini"
    assert "x-ratelimit-limit-requests" not in reply.headers
    assert v1.status_code == 200 and v1.json()["modelVersion"] == "other-model"
    assert capped["candidates"][0]["finishReason"] == "MAX_TOKENS"
    assert capped["usageMetadata"]["candidatesTokenCount"] == 2


async def test_sse_stream_is_incremental_without_terminator(client_for: Any, data_objects: Any) -> None:
    async with client_for(MockSettings(output_tokens=5, chunk_tokens=2)) as (client, _):
        reply = await client.post(STREAM, json=body())
    assert reply.headers["content-type"].startswith("text/event-stream")
    assert reply.content.startswith(b"data: {")
    assert b"[DONE]" not in reply.content and b"event:" not in reply.content
    chunks = data_objects(reply.content)
    texts = [c["candidates"][0]["content"]["parts"][0]["text"] for c in chunks]
    assert texts == ["Forecast bravo ", "charlie delta ", "echo "]
    assert [c["candidates"][0].get("finishReason") for c in chunks] == [None, None, "STOP"]
    assert [c["usageMetadata"]["candidatesTokenCount"] for c in chunks] == [2, 4, 5]
    assert len({c["responseId"] for c in chunks}) == 1


async def test_stream_without_alt_sse_is_a_json_array(client_for: Any) -> None:
    async with client_for(MockSettings(output_tokens=2)) as (client, _):
        reply = await client.post("/v1beta/models/m:streamGenerateContent", json=body())
    assert reply.headers["content-type"] == "application/json"
    chunks = reply.json()
    assert isinstance(chunks, list) and len(chunks) == 2
    assert chunks[-1]["candidates"][0]["finishReason"] == "STOP"


async def test_api_key_header_or_query(client_for: Any) -> None:
    async with client_for(MockSettings(api_key="g-key")) as (client, _):
        missing = await client.post(GENERATE, json=body())
        by_header = await client.post(GENERATE, json=body(), headers={"x-goog-api-key": "g-key"})
        by_query = await client.post(GENERATE + "?key=g-key", json=body())
        wrong = await client.post(GENERATE + "?key=nope", json=body())
    assert missing.status_code == 401 and error_of(missing)["status"] == "UNAUTHENTICATED"
    assert by_header.status_code == 200
    assert by_query.status_code == 200
    assert wrong.status_code == 401


@pytest.mark.parametrize(
    ("contents", "needle"),
    [
        ([{"role": "assistant", "parts": [{"text": "hi"}]}, *USER], "valid role"),
        ([], "contents is not specified"),
        ([{"role": "user", "parts": []}], "must not be empty"),
        (
            [*USER, call_turn("get_weather", "get_time"), response_turn("get_weather")],
            "number of function response",
        ),
        ([*USER, call_turn("get_weather"), *USER], "number of function response"),
        ([*USER, call_turn("get_weather")], "number of function response"),
        ([*USER, response_turn("get_weather")], "number of function response"),
        (
            [call_turn("get_weather"), response_turn("get_weather")],
            "function call turn comes immediately after",
        ),
        ([*USER, call_turn("get_weather"), response_turn("get_weather", response="cold")], "protobuf.Struct"),
    ],
)
async def test_strict_turn_rules(client_for: Any, contents: list[Any], needle: str) -> None:
    async with client_for() as (client, _):
        reply = await client.post(GENERATE, json={"contents": contents})
    assert reply.status_code == 400
    error = error_of(reply)
    assert error["status"] == "INVALID_ARGUMENT"
    assert needle in error["message"]


async def test_unknown_top_level_field_and_snake_case(client_for: Any) -> None:
    async with client_for() as (client, _):
        unknown = await client.post(GENERATE, json=body(temperature=0.5))
        snake = await client.post(GENERATE, json=body(generation_config={"max_output_tokens": 1}))
        method = await client.post("/v1beta/models/m:countTokens", json=body())  # embedContent is served now
    assert unknown.status_code == 400
    assert 'Unknown name "temperature"' in error_of(unknown)["message"]
    assert snake.status_code == 200
    assert snake.json()["usageMetadata"]["candidatesTokenCount"] == 1
    assert method.status_code == 404 and error_of(method)["status"] == "NOT_FOUND"


async def test_function_call_round_trip(client_for: Any, data_objects: Any) -> None:
    async with client_for() as (client, _):
        reply = (await client.post(GENERATE, json=body(tools=TOOLS))).json()
        candidate = reply["candidates"][0]
        assert candidate["finishReason"] == "STOP"
        (part,) = candidate["content"]["parts"]
        # Gemini's OpenAPI-subset schema types are upper case; no id, as the real API usually sends.
        assert part == {"functionCall": {"name": "get_weather", "args": {"city": "mock", "days": 1}}}

        contents = [
            *USER,
            {"role": "model", "parts": [part]},
            response_turn("get_weather", response={"t": -3}),
        ]
        answer = (await client.post(GENERATE, json=body(contents=contents, tools=TOOLS))).json()
        text = answer["candidates"][0]["content"]["parts"][0]["text"]
        assert text == 'Tool result received: {"t":-3}'

        forced = {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_time"]}}
        chosen = (await client.post(GENERATE, json=body(tools=TOOLS, toolConfig=forced))).json()
        assert chosen["candidates"][0]["content"]["parts"][0]["functionCall"] == {
            "name": "get_time",
            "args": {"tz": "mock"},
        }
        off = {"functionCallingConfig": {"mode": "NONE"}}
        text_only = (await client.post(GENERATE, json=body(tools=TOOLS, toolConfig=off))).json()
        assert "text" in text_only["candidates"][0]["content"]["parts"][0]

        streamed = await client.post(STREAM, json=body(tools=TOOLS))
    chunks = data_objects(streamed.content)
    assert len(chunks) == 1  # the call arrives whole
    assert chunks[0]["candidates"][0]["content"]["parts"] == [part]
    assert chunks[0]["candidates"][0]["finishReason"] == "STOP"
    assert chunks[0]["usageMetadata"]["candidatesTokenCount"] >= 1


async def test_429_uses_retry_info_and_no_headers(client_for: Any) -> None:
    async with client_for(MockSettings(rpm=6, bucket_seconds=10)) as (client, _):
        statuses = [(await client.post(GENERATE, json=body())).status_code for _ in range(2)]
        limited = await client.post(GENERATE, json=body())
        forced = await client.post(GENERATE, json=body(), headers={"x-mock-fail": "503"})
    assert statuses == [200, 200]
    assert limited.status_code == 429
    error = error_of(limited)
    assert error["status"] == "RESOURCE_EXHAUSTED"
    (detail,) = error["details"]
    assert detail["@type"] == "type.googleapis.com/google.rpc.RetryInfo"
    assert detail["retryDelay"] in ("9s", "10s")
    assert "retry-after" not in limited.headers
    assert not any(name.startswith("x-ratelimit") for name in limited.headers)
    assert forced.status_code == 503 and error_of(forced)["status"] == "UNAVAILABLE"


def test_genai_sdk(live_mock: Any) -> None:
    with live_mock(MockSettings(api_key="g-key", output_tokens=4)) as base:
        client = genai.Client(api_key="g-key", http_options=types.HttpOptions(base_url=base))
        reply = client.models.generate_content(model="mock-gemini", contents="Hello Gemini")
        assert reply.text == "Hello bravo charlie delta "
        assert reply.usage_metadata is not None and reply.usage_metadata.candidates_token_count == 4
        pieces = [c.text for c in client.models.generate_content_stream(model="mock-gemini", contents="Hello Gemini")]
        assert "".join(p or "" for p in pieces) == reply.text
        tool = types.Tool(
            function_declarations=[
                types.FunctionDeclaration(
                    name="get_weather",
                    parameters_json_schema={"type": "object", "properties": {"city": {"type": "string"}}},
                )
            ]
        )
        config = types.GenerateContentConfig(
            tools=[tool], automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True)
        )
        called = client.models.generate_content(model="mock-gemini", contents="Weather?", config=config)
        assert called.function_calls is not None
        assert called.function_calls[0].name == "get_weather"
        assert called.function_calls[0].args == {"city": "mock"}
        assert orjson.dumps(called.function_calls[0].args) == b'{"city":"mock"}'
