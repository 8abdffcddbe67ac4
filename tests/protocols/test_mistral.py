"""Mistral's strict Chat Completions body (shared/protocols/mistral.py), built from OpenAI's."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from shared.model import ChatRequest, Message, Text, ToolCall, ToolChoice, ToolResult
from shared.protocols import mistral, openai_chat_upstream

_NINE = re.compile(r"^[A-Za-z0-9]{9}$")


@given(st.text(max_size=60))
def test_tool_call_ids_are_nine_alphanumerics_and_stable(original: str) -> None:
    mapped = mistral.tool_call_id(original)
    assert _NINE.match(mapped)
    assert mistral.tool_call_id(original) == mapped  # a call and its result map alike in every request
    assert mistral.tool_call_id(mapped) == mapped  # ids Mistral made pass through unchanged


def test_distinct_ids_stay_distinct() -> None:
    ids = {mistral.tool_call_id(f"call_{n}") for n in range(2000)}
    assert len(ids) == 2000


def _history() -> ChatRequest:
    return ChatRequest(
        model="alias",
        messages=[Message("user", [Text("Weather?")]),
                  Message("assistant", [ToolCall("call_abc_0001", "w", '{"city":"Paris"}')]),
                  Message("user", [ToolResult("call_abc_0001", "21C")])],
        tool_choice=ToolChoice("required"), seed=5, user="someone", reasoning_effort="high",
        stream=True, max_tokens=64,
    )


def test_build_request_is_strict() -> None:
    body = mistral.build_request(_history(), "devstral")
    call_id = mistral.tool_call_id("call_abc_0001")
    assert body["messages"][1] == {"role": "assistant", "content": "", "tool_calls": [
        {"id": call_id, "type": "function", "function": {"name": "w", "arguments": '{"city":"Paris"}'}}]}
    assert body["messages"][2] == {"role": "tool", "tool_call_id": call_id, "content": "21C"}
    assert body["tool_choice"] == "any" and body["random_seed"] == 5
    # Only documented fields: Mistral answers any other with 422.
    assert set(body) == {"model", "messages", "tool_choice", "random_seed", "stream", "max_tokens"}


def test_everything_else_is_openai_chat() -> None:
    plain = ChatRequest(model="a", messages=[Message("user", [Text("Hi")])], temperature=0.5, stop=["x"])
    assert mistral.build_request(plain, "m") == openai_chat_upstream.build_request(plain, "m")
    assert mistral.parse_response is openai_chat_upstream.parse_response
    assert isinstance(mistral.stream_parser(), openai_chat_upstream.StreamParser)
