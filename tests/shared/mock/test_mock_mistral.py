"""The mock provider's Mistral face: OpenAI-shaped, with Mistral's 422s, id rule and role order."""

from __future__ import annotations

import re
from typing import Any

import orjson
import pytest

from shared.mock import MockSettings

pytestmark = pytest.mark.anyio

PATH = "/mistral/v1/chat/completions"
USER = [{"role": "user", "content": "Bonjour Mistral"}]
TOOL = {
    "type": "function",
    "function": {
        "name": "lookup",
        "parameters": {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]},
    },
}


def body(**extra: Any) -> dict[str, Any]:
    return {"model": "mock-mistral", "messages": USER, **extra}


def call(call_id: str, **extra: Any) -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": "lookup", "arguments": "{}"}, **extra}


async def test_plain_completion(client_for: Any) -> None:
    async with client_for(MockSettings(output_tokens=3)) as (client, _):
        reply = await client.post(PATH, json=body(random_seed=1, safe_prompt=False, max_tokens=10))
    assert reply.status_code == 200
    data = reply.json()
    assert data["id"].startswith("cmpl-")
    assert data["choices"][0]["message"] == {"role": "assistant", "content": "Bonjour bravo charlie "}
    assert data["choices"][0]["finish_reason"] == "stop"
    prompt = (len("Bonjour Mistral") + 3) // 4
    assert data["usage"] == {"prompt_tokens": prompt, "completion_tokens": 3, "total_tokens": prompt + 3}


@pytest.mark.parametrize(
    ("payload", "loc"),
    [
        (body(max_completion_tokens=5), ["body", "max_completion_tokens"]),
        (body(store=True), ["body", "store"]),
        (body(stream_options={"include_usage": True}), ["body", "stream_options"]),
        (
            body(messages=[{"role": "user", "content": "x", "name": "bob"}]),
            ["body", "messages", 0, "user", "name"],
        ),
        (
            body(messages=[*USER, {"role": "assistant", "content": "a", "reasoning_content": "r"}, *USER]),
            ["body", "messages", 1, "assistant", "reasoning_content"],
        ),
        (
            body(
                messages=[
                    *USER,
                    {"role": "assistant", "content": None, "tool_calls": [call("abcDEF123", name="lookup")]},
                    {"role": "tool", "tool_call_id": "abcDEF123", "content": "r"},
                ]
            ),
            ["body", "messages", 1, "assistant", "tool_calls", 0, "name"],
        ),
    ],
)
async def test_extra_fields_are_422(client_for: Any, payload: dict[str, Any], loc: list[Any]) -> None:
    async with client_for() as (client, _):
        reply = await client.post(PATH, json=payload)
    assert reply.status_code == 422
    data = reply.json()
    assert data["object"] == "error" and data["type"] == "invalid_request_error"
    assert data["message"]["detail"] == [
        {"type": "extra_forbidden", "loc": loc, "msg": "Extra inputs are not permitted"}
    ]


async def test_tool_call_ids_must_be_nine_alphanumerics(client_for: Any) -> None:
    history = [
        *USER,
        {"role": "assistant", "content": None, "tool_calls": [call("call_0fypS1hVX")]},
        {"role": "tool", "tool_call_id": "call_0fypS1hVX", "content": "r"},
    ]
    tool_only = [*USER, {"role": "tool", "tool_call_id": "short", "content": "r"}]
    async with client_for() as (client, _):
        reply = await client.post(PATH, json=body(messages=history))
        in_tool = await client.post(PATH, json=body(messages=tool_only))
    assert reply.status_code == 400
    data = reply.json()
    assert data["message"] == "Tool call id was call_0fypS1hVX but must be a-z, A-Z, 0-9, with a length of 9."
    assert data["code"] == "3280"
    assert in_tool.status_code == 400
    assert "Tool call id was short" in in_tool.json()["message"]


async def test_role_order(client_for: Any) -> None:
    answered = [
        *USER,
        {"role": "assistant", "content": None, "tool_calls": [call("abcDEF123")]},
        {"role": "tool", "tool_call_id": "abcDEF123", "name": "lookup", "content": "r"},
    ]
    async with client_for() as (client, _):
        user_after_tool = await client.post(PATH, json=body(messages=[*answered, *USER]))
        last_assistant = await client.post(PATH, json=body(messages=[*USER, {"role": "assistant", "content": "a"}]))
        prefix = await client.post(
            PATH, json=body(messages=[*USER, {"role": "assistant", "content": "Sure", "prefix": True}])
        )
        fine = await client.post(PATH, json=body(messages=[*answered, {"role": "assistant", "content": "ok"}, *USER]))
    assert user_after_tool.status_code == 400
    assert user_after_tool.json()["message"] == "Unexpected role 'user' after role 'tool'"
    assert user_after_tool.json()["type"] == "invalid_request_message_order"
    assert last_assistant.status_code == 400
    assert last_assistant.json()["message"].startswith("Expected last role User or Tool")
    assert prefix.status_code == 200
    assert fine.status_code == 200


async def test_tool_round_trip_with_mistral_ids(client_for: Any, data_objects: Any) -> None:
    async with client_for() as (client, _):
        reply = (await client.post(PATH, json=body(tools=[TOOL], tool_choice="any"))).json()
        assert reply["choices"][0]["finish_reason"] == "tool_calls"
        made = reply["choices"][0]["message"]["tool_calls"][0]
        assert re.fullmatch(r"[a-zA-Z0-9]{9}", made["id"])
        assert orjson.loads(made["function"]["arguments"]) == {"q": "mock"}

        history = [
            *USER,
            {"role": "assistant", "content": None, "tool_calls": [made]},
            {"role": "tool", "tool_call_id": made["id"], "name": "lookup", "content": "the answer"},
        ]
        follow = await client.post(PATH, json=body(messages=history, tools=[TOOL]))
        assert follow.status_code == 200, follow.text
        assert follow.json()["choices"][0]["message"]["content"] == "Tool result received: the answer"

        streamed = await client.post(PATH, json=body(tools=[TOOL], stream=True))
    chunks = data_objects(streamed.content)
    assert chunks[-1] == "[DONE]"
    head = chunks[0]["choices"][0]["delta"]["tool_calls"][0]
    assert re.fullmatch(r"[a-zA-Z0-9]{9}", head["id"])
    fragments = [c["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"] for c in chunks[1:-2]]
    assert len(fragments) >= 2 and "".join(fragments) == '{"q":"mock"}'
    last = chunks[-2]
    assert last["choices"][0]["finish_reason"] == "tool_calls"
    assert last["usage"]["completion_tokens"] >= 1  # Mistral puts usage on the finish chunk


async def test_stream_text_and_errors(client_for: Any, data_objects: Any) -> None:
    async with client_for(MockSettings(output_tokens=2, api_key="m-key")) as (client, _):
        unauthorized = await client.post(PATH, json=body())
        auth = {"authorization": "Bearer m-key"}
        streamed = await client.post(PATH, json=body(stream=True), headers=auth)
        failed = await client.post(PATH, json=body(), headers={**auth, "x-mock-fail": "500"})
    assert unauthorized.status_code == 401
    chunks = data_objects(streamed.content)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks[:-1]) == "Bonjour bravo "
    assert "usage" not in chunks[1]
    assert chunks[-2]["usage"]["completion_tokens"] == 2
    assert failed.status_code == 500
    assert failed.json()["object"] == "error"
