"""The mock provider's OpenAI Chat face, plus what every dialect shares: limits, stats, control."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import openai
import orjson
import pytest

import shared.mock
from shared.mock import MockSettings

pytestmark = pytest.mark.anyio

USER = [{"role": "user", "content": "Hello there, mock"}]
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "days": {"type": "integer"},
                "metric": {"type": "boolean"},
                "unit": {"type": "string", "enum": ["c", "f"]},
                "where": {"type": "object", "properties": {"lat": {"type": "number"}}},
            },
            "required": ["city"],
        },
    },
}
OTHER_TOOL = {"type": "function", "function": {"name": "other", "parameters": {"type": "object"}}}


def body(**extra: Any) -> dict[str, Any]:
    return {"model": "mock-gpt", "messages": USER, **extra}


async def test_non_stream_text_is_deterministic(client_for: Any) -> None:
    async with client_for(MockSettings(output_tokens=5)) as (client, _):
        first = await client.post("/v1/chat/completions", json=body())
        second = await client.post("/v1/chat/completions", json=body())
    assert first.status_code == 200
    assert first.headers["content-type"] == "application/json"
    assert first.headers["x-request-id"]
    data = first.json()
    assert data["object"] == "chat.completion"
    assert data["model"] == "mock-gpt"
    choice = data["choices"][0]
    assert choice["message"] == {
        "role": "assistant",
        "content": "Hello bravo charlie delta echo ",
        "refusal": None,
    }
    assert choice["finish_reason"] == "stop"
    chars = len("Hello there, mock")
    assert data["usage"]["prompt_tokens"] == (chars + 3) // 4
    assert data["usage"]["completion_tokens"] == 5
    assert data["usage"]["total_tokens"] == data["usage"]["prompt_tokens"] + 5
    assert data["usage"]["prompt_tokens_details"]["cached_tokens"] == 0
    assert data["usage"]["completion_tokens_details"]["reasoning_tokens"] == 0
    assert second.json()["choices"] == data["choices"]
    assert second.json()["id"] != data["id"]


async def test_max_tokens_caps_output_and_reports_length(client_for: Any) -> None:
    async with client_for(MockSettings(output_tokens=16)) as (client, _):
        capped = (await client.post("/v1/chat/completions", json=body(max_completion_tokens=3))).json()
        legacy = (await client.post("/v1/chat/completions", json=body(max_tokens=20))).json()
        bad = await client.post("/v1/chat/completions", json=body(max_tokens=0))
    assert capped["choices"][0]["message"]["content"] == "Hello bravo charlie "
    assert capped["choices"][0]["finish_reason"] == "length"
    assert capped["usage"]["completion_tokens"] == 3
    assert legacy["choices"][0]["finish_reason"] == "stop"
    assert legacy["usage"]["completion_tokens"] == 16
    assert bad.status_code == 400
    assert bad.json()["error"]["param"] == "max_tokens"


async def test_stream_with_usage_frames(client_for: Any, data_objects: Any) -> None:
    async with client_for(MockSettings(output_tokens=4, chunk_tokens=1)) as (client, _):
        plain = (await client.post("/v1/chat/completions", json=body())).json()
        reply = await client.post(
            "/v1/chat/completions", json=body(stream=True, stream_options={"include_usage": True})
        )
    assert reply.status_code == 200
    assert reply.headers["content-type"].startswith("text/event-stream")
    assert reply.content.endswith(b"data: [DONE]\n\n")
    chunks = data_objects(reply.content)
    assert chunks[-1] == "[DONE]"
    usage_chunk = chunks[-2]
    assert usage_chunk["choices"] == []
    assert usage_chunk["usage"]["completion_tokens"] == 4
    assert usage_chunk["usage"]["prompt_tokens"] == plain["usage"]["prompt_tokens"]
    body_chunks = chunks[:-2]
    assert all(c["object"] == "chat.completion.chunk" and c["usage"] is None for c in body_chunks)
    assert len({c["id"] for c in chunks[:-1]}) == 1
    assert body_chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert body_chunks[-1]["choices"][0] == {
        "index": 0,
        "delta": {},
        "logprobs": None,
        "finish_reason": "stop",
    }
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in body_chunks)
    assert text == plain["choices"][0]["message"]["content"]
    assert len(body_chunks) == 1 + 4 + 1  # role, one chunk per token, finish


async def test_stream_without_usage_has_no_usage_key(client_for: Any, data_objects: Any) -> None:
    async with client_for(MockSettings(output_tokens=6, chunk_tokens=4)) as (client, _):
        reply = await client.post("/v1/chat/completions", json=body(stream=True))
    chunks = data_objects(reply.content)
    assert chunks[-1] == "[DONE]"
    assert all("usage" not in c for c in chunks[:-1])
    contents = [c["choices"][0]["delta"].get("content") for c in chunks[1:-2]]
    assert contents == ["Hello bravo charlie delta ", "echo foxtrot "]


async def test_tool_call_round_trip(client_for: Any, data_objects: Any) -> None:
    async with client_for(MockSettings()) as (client, _):
        reply = (await client.post("/v1/chat/completions", json=body(tools=[WEATHER_TOOL]))).json()
        choice = reply["choices"][0]
        assert choice["finish_reason"] == "tool_calls"
        call = choice["message"]["tool_calls"][0]
        assert call["type"] == "function"
        assert call["id"].startswith("call_")
        assert call["function"]["name"] == "get_weather"
        # Scalars always (enum -> first value), non-scalars only when required.
        assert orjson.loads(call["function"]["arguments"]) == {
            "city": "mock",
            "days": 1,
            "metric": True,
            "unit": "c",
        }
        assert reply["usage"]["completion_tokens"] >= 1

        history = [
            *USER,
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {
                "role": "tool",
                "tool_call_id": call["id"],
                "content": '{"temp": 21, "sky": "clear and bright"}',
            },
        ]
        follow = await client.post("/v1/chat/completions", json=body(messages=history, tools=[WEATHER_TOOL]))
        assert follow.status_code == 200, follow.text
        answer = follow.json()["choices"][0]
        assert answer["finish_reason"] == "stop"
        assert answer["message"]["content"] == 'Tool result received: {"temp": 21, "sky": "clear and bright"}'

        again = (await client.post("/v1/chat/completions", json=body(tools=[WEATHER_TOOL]))).json()
        streamed = await client.post("/v1/chat/completions", json=body(tools=[WEATHER_TOOL], stream=True))
    assert again["choices"][0]["message"]["tool_calls"][0]["id"] == call["id"]  # same request, same id
    chunks = data_objects(streamed.content)
    first = chunks[0]["choices"][0]["delta"]["tool_calls"][0]
    assert first["id"].startswith("call_") and first["type"] == "function"
    assert first["function"] == {"name": "get_weather", "arguments": ""}
    fragments = [
        c["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"]
        for c in chunks[1:-1]
        if c != "[DONE]" and c["choices"][0]["delta"].get("tool_calls")
    ]
    assert len(fragments) >= 2
    assert "".join(fragments) == call["function"]["arguments"]
    assert chunks[-2]["choices"][0]["finish_reason"] == "tool_calls"


async def test_tool_choice_none_and_forced(client_for: Any) -> None:
    async with client_for(MockSettings(output_tokens=2)) as (client, _):
        none = await client.post("/v1/chat/completions", json=body(tools=[WEATHER_TOOL], tool_choice="none"))
        forced = await client.post(
            "/v1/chat/completions",
            json=body(
                tools=[WEATHER_TOOL, OTHER_TOOL],
                tool_choice={"type": "function", "function": {"name": "other"}},
            ),
        )
        unknown = await client.post(
            "/v1/chat/completions",
            json=body(tools=[WEATHER_TOOL], tool_choice={"type": "function", "function": {"name": "nope"}}),
        )
    assert none.json()["choices"][0]["message"]["content"] == "Hello bravo "
    call = forced.json()["choices"][0]["message"]["tool_calls"][0]
    assert call["function"] == {"name": "other", "arguments": "{}"}
    assert unknown.status_code == 400


async def test_tool_pairing_is_enforced(client_for: Any) -> None:
    call = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}
    async with client_for() as (client, _):
        unanswered = await client.post(
            "/v1/chat/completions",
            json=body(messages=[*USER, {"role": "assistant", "tool_calls": [call]}, *USER]),
        )
        orphan = await client.post(
            "/v1/chat/completions",
            json=body(messages=[*USER, {"role": "tool", "tool_call_id": "call_9", "content": "x"}]),
        )
        bad_role = await client.post("/v1/chat/completions", json=body(messages=[{"role": "bot", "content": "x"}]))
        empty = await client.post("/v1/chat/completions", json=body(messages=[]))
        not_json = await client.post("/v1/chat/completions", content=b"{nope")
    assert unanswered.status_code == 400
    assert "call_1" in unanswered.json()["error"]["message"]
    assert orphan.status_code == 400
    assert bad_role.status_code == 400
    assert empty.status_code == 400
    assert not_json.status_code == 400
    assert not_json.json()["error"]["type"] == "invalid_request_error"


async def test_bearer_auth(client_for: Any) -> None:
    async with client_for(MockSettings(api_key="sk-mock")) as (client, app):
        missing = await client.post("/v1/chat/completions", json=body())
        wrong = await client.post("/v1/chat/completions", json=body(), headers={"authorization": "Bearer nope"})
        right = await client.post("/v1/chat/completions", json=body(), headers={"authorization": "Bearer sk-mock"})
    assert missing.status_code == 401
    assert wrong.status_code == 401
    assert wrong.json()["error"]["code"] == "invalid_api_key"
    assert right.status_code == 200
    assert app.state.stats.by_status == {401: 2, 200: 1}


async def test_forced_failure_and_latency_override(client_for: Any) -> None:
    async with client_for() as (client, _):
        failed = await client.post("/v1/chat/completions", json=body(), headers={"x-mock-fail": "503"})
        limited = await client.post("/v1/chat/completions", json=body(), headers={"x-mock-fail": "429"})
        started = time.monotonic()
        slow = await client.post("/v1/chat/completions", json=body(), headers={"x-mock-latency-ms": "150"})
        elapsed = time.monotonic() - started
        ignored = await client.post("/v1/chat/completions", json=body(), headers={"x-mock-fail": "banana"})
    assert failed.status_code == 503
    assert failed.json()["error"]["type"] == "server_error"
    assert limited.status_code == 429
    assert limited.headers["retry-after"] == "1"
    assert limited.headers["retry-after-ms"] == "1000"
    assert slow.status_code == 200
    assert elapsed >= 0.14
    assert ignored.status_code == 200


async def test_rpm_bucket_empties_then_429_with_headers(client_for: Any) -> None:
    # rpm=12 over a 10 s bucket holds 2 requests, refilled at one per 5 s.
    async with client_for(MockSettings(rpm=12, bucket_seconds=10)) as (client, app):
        first = await client.post("/v1/chat/completions", json=body())
        second = await client.post("/v1/chat/completions", json=body())
        third = await client.post("/v1/chat/completions", json=body())
        stats = (await client.get("/_stats")).json()
        await client.post("/_reset")
        after_reset = await client.post("/v1/chat/completions", json=body())
    assert first.status_code == second.status_code == 200
    assert first.headers["x-ratelimit-limit-requests"] == "12"
    assert first.headers["x-ratelimit-remaining-requests"] == "1"
    assert second.headers["x-ratelimit-remaining-requests"] == "0"
    assert "x-ratelimit-limit-tokens" not in first.headers  # tpm unlimited
    assert third.status_code == 429
    error = third.json()["error"]
    assert error["type"] == "requests"
    assert error["code"] == "rate_limit_exceeded"
    assert third.headers["retry-after"] in ("4", "5")
    assert 4000 <= int(third.headers["retry-after-ms"]) <= 5000
    assert third.headers["x-ratelimit-remaining-requests"] == "0"
    reset = third.headers["x-ratelimit-reset-requests"]
    assert reset.endswith("s") and 9 <= float(reset.rstrip("s")) <= 10
    assert stats["requests"] == 3
    assert stats["responses_429"] == 1
    assert stats["by_status"] == {"200": 2, "429": 1}
    assert after_reset.status_code == 200
    assert app.state.stats.requests == 1


async def test_tpm_counts_input_plus_max_tokens(client_for: Any) -> None:
    # tpm=600 over 10 s holds 100 tokens; each request costs 5 input + 60 max tokens.
    async with client_for(MockSettings(tpm=600, bucket_seconds=10)) as (client, _):
        first = await client.post("/v1/chat/completions", json=body(max_tokens=60))
        second = await client.post("/v1/chat/completions", json=body(max_tokens=60))
        small = await client.post("/v1/chat/completions", json=body(max_tokens=10))
    assert first.status_code == 200
    assert first.headers["x-ratelimit-remaining-tokens"] == "35"
    assert second.status_code == 429
    assert second.json()["error"]["type"] == "tokens"
    assert int(second.headers["retry-after"]) >= 3
    assert small.status_code == 200


async def test_config_changes_limits_live(client_for: Any) -> None:
    settings = MockSettings()
    async with client_for(settings) as (client, _):
        for _ in range(5):
            assert (await client.post("/v1/chat/completions", json=body())).status_code == 200
        changed = await client.post("/_config", json={"rpm": 6, "output_tokens": 3})
        assert changed.status_code == 200
        assert changed.json()["rpm"] == 6
        assert settings.rpm == 6 and settings.output_tokens == 3
        statuses = [(await client.post("/v1/chat/completions", json=body())).status_code for _ in range(3)]
        bad = await client.post("/_config", json={"rpm": -1})
        unknown = await client.post("/_config", json={"nope": 1})
        current = (await client.get("/_config")).json()
    assert statuses == [200, 200, 429]
    assert bad.status_code == 400
    assert unknown.status_code == 400
    assert current["rpm"] == 6


async def test_stats_track_tokens_and_concurrency(client_for: Any) -> None:
    async with client_for(MockSettings(output_tokens=7, latency_ms=300)) as (client, _):
        empty = (await client.get("/_stats")).json()
        replies = await asyncio.gather(*(client.post("/v1/chat/completions", json=body()) for _ in range(4)))
        stats = (await client.get("/_stats")).json()
    assert empty["first_request_at"] is None and empty["requests"] == 0
    assert [r.status_code for r in replies] == [200] * 4
    assert stats["requests"] == 4
    assert stats["in_flight"] == 0
    assert stats["max_in_flight"] == 4
    assert stats["output_tokens"] == 28
    assert stats["input_tokens"] == 4 * replies[0].json()["usage"]["prompt_tokens"]
    assert stats["first_request_at"] <= stats["last_request_at"]


async def test_models_and_unknown_routes(client_for: Any) -> None:
    async with client_for() as (client, _):
        models = (await client.get("/v1/models")).json()
        missing = await client.get("/v1/nothing")
        wrong_method = await client.get("/v1/chat/completions")
    assert models["object"] == "list"
    assert {m["id"] for m in models["data"]} >= {"mock-gpt"}
    assert missing.status_code == 404
    assert wrong_method.status_code == 405


def test_paced_stream_over_real_server(live_mock: Any) -> None:
    settings = MockSettings(output_tokens=6, tokens_per_second=50, latency_ms=50)
    with live_mock(settings) as base, httpx.Client(base_url=base) as client:
        started = time.monotonic()
        arrivals: list[float] = []
        with client.stream("POST", "/v1/chat/completions", json=body(stream=True)) as reply:
            for _ in reply.iter_raw():
                arrivals.append(time.monotonic() - started)
        assert reply.status_code == 200
    # 50 ms latency, then six chunks 20 ms apart: at least 150 ms in all, in several writes.
    assert arrivals[-1] >= 0.14
    assert len(arrivals) >= 3


def test_openai_sdk_strict(live_mock: Any) -> None:
    messages: Any = USER  # the SDK's TypedDicts, as plain dicts
    tools: Any = [WEATHER_TOOL]
    with live_mock(MockSettings(api_key="sk-mock", output_tokens=5)) as base:
        client = openai.OpenAI(
            base_url=f"{base}/v1", api_key="sk-mock", max_retries=0, _strict_response_validation=True
        )
        reply = client.chat.completions.create(model="mock-gpt", messages=messages)
        assert reply.choices[0].message.content == "Hello bravo charlie delta echo "
        assert reply.usage is not None and reply.usage.completion_tokens == 5

        stream = client.chat.completions.create(
            model="mock-gpt",
            messages=messages,
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = list(stream)
        assert (
            "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == reply.choices[0].message.content
        )
        assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 5

        with client.chat.completions.stream(
            model="mock-gpt",
            messages=messages,
            tools=tools,
        ) as events:
            final = events.get_final_completion()
        calls = final.choices[0].message.tool_calls
        assert calls is not None and calls[0].function.name == "get_weather"
        assert orjson.loads(calls[0].function.arguments)["city"] == "mock"

        with pytest.raises(openai.RateLimitError):
            client.chat.completions.create(
                model="mock-gpt",
                messages=messages,
                extra_headers={"x-mock-fail": "429"},
            )


def test_run_uses_fast_server_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}
    monkeypatch.setattr("uvicorn.run", lambda app, **kwargs: seen.update(kwargs, app=app))
    shared.mock.run("127.0.0.1", 9999, MockSettings())
    assert seen["loop"] == "uvloop" and seen["http"] == "httptools"
    assert seen["log_level"] == "warning" and seen["access_log"] is False
    assert seen["host"] == "127.0.0.1" and seen["port"] == 9999


async def test_paced_stream_stops_when_the_client_leaves() -> None:
    app = shared.mock.create_app(MockSettings(output_tokens=200, tokens_per_second=1000))
    raw = orjson.dumps(body(stream=True))
    incoming = [{"type": "http.request", "body": raw, "more_body": False}, {"type": "http.disconnect"}]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return incoming.pop(0)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/v1/chat/completions",
        "headers": [],
        "query_string": b"",
    }
    await app(scope, receive, send)
    bodies = [m for m in sent if m["type"] == "http.response.body"]
    assert sent[0]["status"] == 200
    assert 1 <= len(bodies) < 10  # stopped after the disconnect, not 200 chunks later
    assert app.state.stats.in_flight == 0
