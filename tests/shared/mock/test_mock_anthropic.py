"""The mock provider's Anthropic Messages face: strict validation, event-named streams, tool use."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import anthropic
import orjson
import pytest

from shared.mock import MockSettings

pytestmark = pytest.mark.anyio

HEADERS = {"x-api-key": "k", "anthropic-version": "2023-06-01"}
USER = [{"role": "user", "content": "Weather in Paris please"}]
TOOL = {
    "name": "get_weather",
    "description": "Weather for a city",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}, "days": {"type": "number"}, "tags": {"type": "array"}},
        "required": ["city"],
    },
}


def body(**extra: Any) -> dict[str, Any]:
    return {"model": "mock-claude", "max_tokens": 100, "messages": USER, **extra}


async def post(client: Any, payload: dict[str, Any], headers: dict[str, str] | None = None) -> Any:
    return await client.post("/v1/messages", json=payload, headers=HEADERS if headers is None else headers)


def error_of(reply: Any) -> tuple[str, str]:
    data = reply.json()
    assert data["type"] == "error"
    return data["error"]["type"], data["error"]["message"]


async def test_non_stream_text(client_for: Any) -> None:
    async with client_for(MockSettings(output_tokens=4)) as (client, _):
        reply = await post(client, body(system=[{"type": "text", "text": "Be terse."}]))
        capped = (await post(client, body(max_tokens=2))).json()
    assert reply.status_code == 200
    assert reply.headers["request-id"]
    data = reply.json()
    assert data["type"] == "message" and data["role"] == "assistant" and data["model"] == "mock-claude"
    assert data["content"] == [{"type": "text", "text": "Weather bravo charlie delta "}]
    assert data["stop_reason"] == "end_turn" and data["stop_sequence"] is None
    chars = len("Weather in Paris please") + len("Be terse.")
    assert data["usage"] == {
        "input_tokens": (chars + 3) // 4,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "output_tokens": 4,
    }
    assert capped["stop_reason"] == "max_tokens"
    assert capped["usage"]["output_tokens"] == 2


async def test_stream_event_sequence(client_for: Any, frames: Any) -> None:
    async with client_for(MockSettings(output_tokens=3)) as (client, _):
        reply = await post(client, body(stream=True))
    assert reply.headers["content-type"].startswith("text/event-stream")
    events = frames(reply.content)
    names = [f.event for f in events]
    assert names == [
        "message_start",
        "content_block_start",
        "ping",
        "content_block_delta",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    payloads = [orjson.loads(f.data) for f in events]
    assert all(p["type"] == n for p, n in zip(payloads, names, strict=True))
    start = payloads[0]["message"]
    assert start["content"] == [] and start["stop_reason"] is None
    assert payloads[1]["content_block"] == {"type": "text", "text": ""}
    text = "".join(p["delta"]["text"] for p in payloads if p["type"] == "content_block_delta")
    assert text == "Weather bravo charlie "
    delta = payloads[-2]
    assert delta["delta"] == {"stop_reason": "end_turn", "stop_sequence": None}
    assert delta["usage"]["output_tokens"] == 3  # cumulative, not a sum
    assert delta["usage"]["input_tokens"] == start["usage"]["input_tokens"]


async def test_auth_and_version_headers(client_for: Any) -> None:
    async with client_for(MockSettings()) as (client, _):
        no_key = await post(client, body(), {"anthropic-version": "2023-06-01"})
        no_version = await post(client, body(), {"x-api-key": "anything"})
    async with client_for(MockSettings(api_key="sk-ant")) as (client, _):
        wrong = await post(client, body(), HEADERS)
        right = await post(client, body(), {**HEADERS, "x-api-key": "sk-ant"})
        bearer = await post(client, body(), {"anthropic-version": "2023-06-01", "authorization": "Bearer sk-ant"})
    assert no_key.status_code == 401  # required even when the mock has no key configured
    assert error_of(no_key)[0] == "authentication_error"
    assert no_version.status_code == 400
    assert "anthropic-version" in error_of(no_version)[1]
    assert wrong.status_code == 401
    assert right.status_code == 200
    assert bearer.status_code == 200  # what anthropic-python >= 2 sends


@pytest.mark.parametrize(
    ("payload", "needle"),
    [
        ({"model": "mock-claude", "messages": USER}, "max_tokens"),
        ({**body(), "frequency_penalty": 1}, "frequency_penalty: Extra inputs are not permitted"),
        (body(messages=[]), "at least one message"),
        (body(messages=[{"role": "system", "content": "x"}]), "messages.0.role"),
        (body(messages=[{"role": "user", "content": ""}]), "non-empty content"),
        (body(messages=[{"role": "user", "content": [{"type": "text", "text": ""}]}]), "must be non-empty"),
    ],
)
async def test_strict_rejections(client_for: Any, payload: dict[str, Any], needle: str) -> None:
    async with client_for() as (client, app):
        reply = await post(client, payload)
    assert reply.status_code == 400
    kind, message = error_of(reply)
    assert kind == "invalid_request_error"
    assert needle in message
    assert app.state.stats.by_status == {400: 1}


def _use(tool_id: str) -> dict[str, Any]:
    return {"type": "tool_use", "id": tool_id, "name": "get_weather", "input": {"city": "Paris"}}


def _result(tool_id: str) -> dict[str, Any]:
    return {"type": "tool_result", "tool_use_id": tool_id, "content": "21 degrees"}


async def test_tool_pairing(client_for: Any) -> None:
    unanswered = [*USER, {"role": "assistant", "content": [_use("toolu_1")]}, *USER]
    wrong_id = [
        *USER,
        {"role": "assistant", "content": [_use("toolu_1")]},
        {"role": "user", "content": [_result("x")]},
    ]
    orphan = [{"role": "user", "content": [_result("toolu_1")]}]
    # Consecutive same-role messages are merged, so a split tool_result turn still pairs up.
    merged = [
        *USER,
        {"role": "assistant", "content": [{"type": "text", "text": "Checking."}]},
        {"role": "assistant", "content": [_use("toolu_1"), _use("toolu_2")]},
        {"role": "user", "content": [_result("toolu_1")]},
        {"role": "user", "content": [_result("toolu_2"), {"type": "text", "text": "thanks"}]},
    ]
    async with client_for() as (client, _):
        replies = [await post(client, body(messages=m)) for m in (unanswered, wrong_id, orphan, merged)]
    assert [r.status_code for r in replies] == [400, 400, 400, 200]
    assert (
        "`tool_use` ids were found without `tool_result` blocks immediately after: toolu_1" in error_of(replies[0])[1]
    )
    assert "unexpected `tool_use_id`" in error_of(replies[1])[1]
    assert "messages.2.content.0" in error_of(replies[1])[1]
    assert "unexpected `tool_use_id`" in error_of(replies[2])[1]
    assert replies[3].json()["content"][0]["text"] == "Tool result received: 21 degrees"


async def test_tool_use_round_trip(client_for: Any, frames: Any) -> None:
    async with client_for() as (client, _):
        reply = (await post(client, body(tools=[TOOL]))).json()
        assert reply["stop_reason"] == "tool_use"
        (use,) = reply["content"]
        assert use["type"] == "tool_use" and use["id"].startswith("toolu_") and use["name"] == "get_weather"
        assert use["input"] == {"city": "mock", "days": 1}  # the optional array is left out

        follow = [
            *USER,
            {"role": "assistant", "content": [use]},
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": use["id"], "content": "sunny"}],
            },
        ]
        answer = (await post(client, body(messages=follow, tools=[TOOL]))).json()
        assert answer["stop_reason"] == "end_turn"
        assert answer["content"] == [{"type": "text", "text": "Tool result received: sunny"}]

        none = (await post(client, body(tools=[TOOL], tool_choice={"type": "none"}))).json()
        assert none["content"][0]["type"] == "text"
        streamed = await post(client, body(tools=[TOOL], stream=True))
    payloads = [orjson.loads(f.data) for f in frames(streamed.content)]
    start = next(p for p in payloads if p["type"] == "content_block_start")
    assert start["content_block"] == {
        "type": "tool_use",
        "id": start["content_block"]["id"],
        "name": "get_weather",
        "input": {},
    }
    parts = [p["delta"]["partial_json"] for p in payloads if p["type"] == "content_block_delta"]
    assert len(parts) >= 2
    assert orjson.loads("".join(parts)) == use["input"]
    assert payloads[-2]["delta"]["stop_reason"] == "tool_use"


async def test_rate_limit_headers_and_429(client_for: Any) -> None:
    async with client_for(MockSettings(rpm=60, tpm=60000, bucket_seconds=2)) as (client, _):
        ok = await post(client, body())
        await post(client, body())
        limited = await post(client, body())
        forced = await post(client, body(), {**HEADERS, "x-mock-fail": "529"})
    assert ok.status_code == 200
    assert ok.headers["anthropic-ratelimit-requests-limit"] == "60"
    assert ok.headers["anthropic-ratelimit-requests-remaining"] == "1"
    reset = datetime.strptime(ok.headers["anthropic-ratelimit-requests-reset"], "%Y-%m-%dT%H:%M:%SZ")
    assert reset.year >= 2024
    assert ok.headers["anthropic-ratelimit-tokens-limit"] == "60000"
    assert ok.headers["x-ratelimit-remaining-requests"] == "1"
    assert limited.status_code == 429
    assert error_of(limited)[0] == "rate_limit_error"
    assert limited.headers["retry-after"] == "1"
    assert limited.headers["anthropic-ratelimit-requests-remaining"] == "0"
    assert forced.status_code == 529
    assert error_of(forced)[0] == "overloaded_error"


async def test_models_list_in_anthropic_shape(client_for: Any) -> None:
    async with client_for() as (client, _):
        data = (await client.get("/v1/models", headers=HEADERS)).json()
    assert data["has_more"] is False
    assert data["data"][0]["type"] == "model"


def test_anthropic_sdk_strict(live_mock: Any) -> None:
    messages: Any = USER  # the SDK's TypedDicts, as plain dicts
    tools: Any = [TOOL]
    with live_mock(MockSettings(api_key="sk-ant", output_tokens=5)) as base:
        client = anthropic.Anthropic(base_url=base, api_key="sk-ant", max_retries=0, _strict_response_validation=True)
        reply = client.messages.create(model="mock-claude", max_tokens=50, messages=messages)
        assert reply.content[0].type == "text"
        assert reply.content[0].text == "Weather bravo charlie delta echo "
        assert reply.usage.output_tokens == 5

        with client.messages.stream(model="mock-claude", max_tokens=50, messages=messages) as stream:
            text = "".join(stream.text_stream)
            final = stream.get_final_message()
        assert text == reply.content[0].text
        assert final.stop_reason == "end_turn" and final.usage.output_tokens == 5

        with client.messages.stream(
            model="mock-claude",
            max_tokens=50,
            messages=messages,
            tools=tools,
        ) as stream:
            tool_final = stream.get_final_message()
        block = tool_final.content[0]
        assert block.type == "tool_use" and block.name == "get_weather"
        assert block.input["city"] == "mock"

        with pytest.raises(anthropic.AuthenticationError):
            anthropic.Anthropic(base_url=base, api_key="wrong", max_retries=0).messages.create(
                model="mock-claude",
                max_tokens=5,
                messages=messages,
            )
