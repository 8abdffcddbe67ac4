"""The repair module: every legal conversation of each client protocol, once legalized, is a
legal conversation of each upstream.

Property tests draw conversations a real client could send (tests/protocols/conversations.py),
parse them with the client's dialect, legalize them for each upstream family, build the upstream
body with that upstream's dialect and hand it to the strict mock's own validation of that
upstream (shared/mock/), which enforces each upstream's real rules. The checker
(`repair.violations`) must agree. Examples then pin the two failures the issue reports and the
refusals.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.errors import GatewayError
from shared.mock.anthropic import AnthropicDialect
from shared.mock.core import MockError, Request
from shared.mock.gemini import GeminiDialect
from shared.mock.mistral import MistralDialect
from shared.mock.openai import OpenAIDialect
from shared.model import ChatRequest, Message, Reasoning, Text, ToolCall, ToolResult
from shared.protocols import (
    anthropic_messages,
    anthropic_upstream,
    gemini,
    gemini_upstream,
    mistral,
    openai_chat,
    openai_chat_upstream,
    openai_responses,
    repair,
)
from tests.protocols.conversations import CLIENTS, render, scripts

FAMILIES: tuple[repair.Family, ...] = ("openai", "anthropic", "gemini", "mistral")


def parse(client: str, body: dict[str, Any]) -> ChatRequest:
    raw = orjson.dumps(body)
    if client == "openai_chat":
        return openai_chat.parse_request(raw)
    if client == "openai_responses":
        return openai_responses.parse_request(raw)
    if client == "anthropic":
        return anthropic_messages.parse_request(raw)
    return gemini.parse_request(raw, "m", False)


def upstream_accepts(req: ChatRequest, family: repair.Family) -> None:
    """Builds the upstream body as the worker does and runs the strict mock's checks on it."""
    scope: dict[str, Any] = {"path": "/v1/chat/completions", "headers": [], "query_string": b""}
    if family == "openai":
        body, dialect = openai_chat_upstream.build_request(req, "m"), OpenAIDialect()
    elif family == "mistral":
        body, dialect = mistral.build_request(req, "m"), MistralDialect()
    elif family == "anthropic":
        body, dialect = anthropic_upstream.build_request(req, "m", default_max_tokens=4096), AnthropicDialect()
    else:
        body, dialect = gemini_upstream.build_request(req, "m"), GeminiDialect()
        scope["path"] = "/v1beta/models/m:generateContent"
    dialect.conversation(Request(scope), orjson.loads(orjson.dumps(body)))  # raises MockError if refused


@pytest.mark.parametrize("client", CLIENTS)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_every_legal_conversation_reaches_every_upstream_legally(client: str, data: st.DataObject) -> None:
    script = data.draw(scripts(client))
    req = parse(client, render(client, script))
    for family in FAMILIES:
        fixed = repair.legalize(req, family)
        assert repair.violations(fixed, family) == [], family
        upstream_accepts(fixed, family)
        assert repair.legalize(fixed, family) is fixed  # legal stays untouched (and cheap)


# --- the failures the issue reports, and that they fail without the repair -------------------


def _anthropic_mixed_turn() -> ChatRequest:
    """Claude Code's everyday shape: a user turn with a tool_result block *and* a text block."""
    return anthropic_messages.parse_request(orjson.dumps({
        "model": "m", "max_tokens": 100,
        "messages": [
            {"role": "user", "content": "list the files"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_01A", "name": "ls", "input": {}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_01A", "content": "a.py"},
                                         {"type": "text", "text": "now read it"}]},
        ],
        "tools": [{"name": "ls", "input_schema": {"type": "object"}}],
    }))


def _chat_user_after_tool() -> ChatRequest:
    return openai_chat.parse_request(orjson.dumps({
        "model": "m",
        "messages": [
            {"role": "user", "content": "list the files"},
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": "call_abc", "type": "function", "function": {"name": "ls", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "call_abc", "content": "a.py"},
            {"role": "user", "content": "now read it"},
        ],
    }))


@pytest.mark.parametrize("make", [_anthropic_mixed_turn, _chat_user_after_tool])
def test_mistral_gets_an_assistant_turn_between_tool_results_and_text(make: Any) -> None:
    req = make()
    with pytest.raises(MockError, match="Unexpected role 'user' after role 'tool'"):
        upstream_accepts(req, "mistral")  # what Mistral answered before the repair
    fixed = repair.legalize(req, "mistral")
    upstream_accepts(fixed, "mistral")
    roles = [m["role"] for m in mistral.build_request(fixed, "m")["messages"]]
    assert roles == ["user", "assistant", "tool", "assistant", "user"]
    assert fixed.messages[3].content == [Text(repair.MISTRAL_BRIDGE)]


def test_text_before_tool_results_is_reordered_for_anthropic() -> None:
    req = ChatRequest(model="m", messages=[
        Message("user", [Text("go")]),
        Message("assistant", [ToolCall("t1", "ls", "{}")]),
        Message("user", [Text("and then"), ToolResult("t1", "a.py")]),
    ])
    assert "tool results do not come first" in repair.violations(req, "anthropic")[0]
    assert repair.legalize(req, "anthropic").messages[2].content == [ToolResult("t1", "a.py"), Text("and then")]


def test_gemini_history_opening_with_calls_gets_an_opening_user_turn() -> None:
    req = ChatRequest(model="m", messages=[
        Message("assistant", [ToolCall("c1", "ls", "{}")]),
        Message("user", [ToolResult("c1", "a.py", name="ls")]),
    ])
    with pytest.raises(MockError, match="function call turn comes immediately after a user turn"):
        upstream_accepts(req, "gemini")
    fixed = repair.legalize(req, "gemini")
    assert fixed.messages[0] == Message("user", [Text(repair.GEMINI_OPENING)])
    upstream_accepts(fixed, "gemini")


def test_anthropic_thinking_is_turned_off_for_a_history_without_its_signed_thinking() -> None:
    req = ChatRequest(model="m", reasoning_effort="high", max_tokens=8000, messages=[
        Message("user", [Text("go")]),
        Message("assistant", [Reasoning(text="hmm"), ToolCall("t1", "ls", "{}")]),  # not Anthropic's
        Message("user", [ToolResult("t1", "a.py")]),
    ])
    with pytest.raises(MockError, match="Expected `thinking` or `redacted_thinking`"):
        upstream_accepts(req, "anthropic")
    fixed = repair.legalize(req, "anthropic")
    assert fixed.reasoning_effort is None
    upstream_accepts(fixed, "anthropic")
    signed = ChatRequest(model="m", reasoning_effort="high", max_tokens=8000, messages=[
        Message("user", [Text("go")]),
        Message("assistant", [Reasoning(text="hmm", signature="sig", provider="anthropic"),
                              ToolCall("t1", "ls", "{}")]),
        Message("user", [ToolResult("t1", "a.py")]),
    ])
    assert repair.legalize(signed, "anthropic") is signed  # its own thinking: kept on


@pytest.mark.parametrize("family", FAMILIES)
def test_mistral_ids_and_prefill(family: repair.Family) -> None:
    req = ChatRequest(model="m", messages=[
        Message("user", [Text("go")]),
        Message("assistant", [ToolCall("toolu_01XYZ", "ls", "{}")]),
        Message("user", [ToolResult("toolu_01XYZ", "a.py", name="ls")]),
        Message("assistant", [Text("The file is")]),
    ])
    fixed = repair.legalize(req, family)
    upstream_accepts(fixed, family)
    if family == "mistral":
        call = fixed.messages[1].content[0]
        assert isinstance(call, ToolCall) and call.id == mistral.tool_call_id("toolu_01XYZ") and len(call.id) == 9
        assert mistral.build_request(fixed, "m")["messages"][-1]["prefix"] is True


@pytest.mark.parametrize(("messages", "match"), [
    ([Message("user", [Text("go")]), Message("assistant", [ToolCall("t1", "ls", "{}")])], "never answered"),
    ([Message("user", [Text("go")]), Message("assistant", [ToolCall("t1", "ls", "{}")]),
      Message("user", [Text("hm")])], "not answered"),
    ([Message("user", [ToolResult("zz", "x"), Text("hi")])], "answer no tool call"),
    ([Message("user", [Text("  ")])], "no content"),
])
@pytest.mark.parametrize("family", FAMILIES)
def test_broken_histories_are_refused_with_a_400(messages: list[Message], match: str,
                                                  family: repair.Family) -> None:
    with pytest.raises(GatewayError, match=match) as caught:
        repair.legalize(ChatRequest(model="m", messages=messages), family)
    assert caught.value.status == 400 and caught.value.param is not None
