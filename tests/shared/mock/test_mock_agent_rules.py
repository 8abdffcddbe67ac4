"""The mock's rules and knobs the agent work relies on: Anthropic's tool_result-first and
thinking-first rules, and the agent-run settings (which tool to call, what to answer, which tool
results it saw)."""

from __future__ import annotations

from typing import Any

import pytest

from shared.mock import MockSettings

pytestmark = pytest.mark.anyio

HEADERS = {"x-api-key": "k", "anthropic-version": "2023-06-01"}
SCHEMA = {"type": "object", "properties": {"path": {"type": "string"}}}
TOOLS = [{"name": "first", "input_schema": SCHEMA}, {"name": "Read", "input_schema": SCHEMA}]


def _history(result_blocks: list[dict[str, Any]], thinking: bool = False) -> dict[str, Any]:
    body: dict[str, Any] = {"model": "mock-claude", "max_tokens": 4096, "tools": TOOLS, "messages": [
        {"role": "user", "content": "go"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "Read", "input": {}}]},
        {"role": "user", "content": result_blocks}]}
    if thinking:
        body["thinking"] = {"type": "enabled", "budget_tokens": 2048}
    return body


RESULT = {"type": "tool_result", "tool_use_id": "toolu_1", "content": "secret"}


async def test_anthropic_tool_results_must_come_first(client_for: Any) -> None:
    async with client_for(MockSettings()) as (client, _):
        late = await client.post("/v1/messages", json=_history([{"type": "text", "text": "hm"}, RESULT]),
                                 headers=HEADERS)
        first = await client.post("/v1/messages", json=_history([RESULT, {"type": "text", "text": "hm"}]),
                                  headers=HEADERS)
    assert late.status_code == 400 and "must come first" in late.json()["error"]["message"]
    assert first.status_code == 200


async def test_anthropic_thinking_must_lead_the_answered_tool_turn(client_for: Any) -> None:
    async with client_for(MockSettings()) as (client, _):
        bare = await client.post("/v1/messages", json=_history([RESULT], thinking=True), headers=HEADERS)
        signed = _history([RESULT], thinking=True)
        signed["messages"][1]["content"].insert(0, {"type": "thinking", "thinking": "t", "signature": "s"})
        led = await client.post("/v1/messages", json=signed, headers=HEADERS)
    assert bare.status_code == 400 and "Expected `thinking` or `redacted_thinking`" in bare.json()["error"]["message"]
    assert led.status_code == 200


async def test_agent_knobs_pick_the_tool_its_arguments_and_the_text(client_for: Any) -> None:
    settings = MockSettings(tool_name="Read", tool_arguments={"path": "/x/notes.txt"}, reply_text="done: ok")
    async with client_for(settings) as (client, _):
        start = {"model": "mock-claude", "max_tokens": 100, "tools": TOOLS,
                 "messages": [{"role": "user", "content": "read it"}]}
        call = (await client.post("/v1/messages", json=start, headers=HEADERS)).json()["content"][0]
        answer = (await client.post("/v1/messages", json=_history([RESULT]), headers=HEADERS)).json()
        stats = (await client.get("/_stats")).json()
    assert (call["name"], call["input"]) == ("Read", {"path": "/x/notes.txt"})  # not the first tool
    assert answer["content"] == [{"type": "text", "text": "done: ok"}]
    assert stats["tool_results"] == ["secret"]


async def test_reply_when_answers_a_turn_by_what_the_user_sent(client_for: Any) -> None:
    """aider sends a failing test's output back as user text: the scripted answer depends on it."""
    settings = MockSettings(reply_text="first edit", reply_when={"TEST FAILED": "second edit", "never": "no"})
    async with client_for(settings) as (client, _):
        def chat(text: str) -> dict[str, Any]:
            return {"model": "mock-gpt", "messages": [{"role": "user", "content": "fix it"},
                                                       {"role": "assistant", "content": "first edit"},
                                                       {"role": "user", "content": text}]}
        passed = (await client.post("/v1/chat/completions", json=chat("all good"))).json()
        failed = (await client.post("/v1/chat/completions", json=chat("I ran pytest: TEST FAILED x"))).json()
    assert passed["choices"][0]["message"]["content"] == "first edit"
    assert failed["choices"][0]["message"]["content"] == "second edit"
