"""The first requests real agents send parse, and their tools come back the way they offered them:
Claude Code's `system` messages inside `messages`, Codex CLI's `namespace` and hosted tools."""

from __future__ import annotations

from typing import Any

import orjson

from shared.model import ChatResponse, Complete, Text, ToolCall, ToolResult
from shared.protocols import anthropic_messages, openai_responses

SCHEMA = {"type": "object", "properties": {"path": {"type": "string"}}}


def test_claude_code_system_messages_join_the_system_prompt_in_order() -> None:
    req = anthropic_messages.parse_request(orjson.dumps({
        "model": "m", "max_tokens": 10,
        "system": [{"type": "text", "text": "top", "cache_control": {"type": "ephemeral"}}],
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "hi"}]},
            {"role": "system", "content": [{"type": "text", "text": "reminder",
                                            "cache_control": {"type": "ephemeral"}}]},
            {"role": "user", "content": "go on"},
        ]}))
    assert req.system == [Text("top"), Text("reminder")]
    assert [m.role for m in req.messages] == ["user"]  # the user turns on either side are one turn
    assert req.messages[0].content == [Text("hi"), Text("go on")]


def _codex_body(**extra: Any) -> bytes:
    tools = [
        {"type": "function", "name": "exec_command", "parameters": SCHEMA, "strict": False},
        {"type": "namespace", "name": "multi_agent_v1", "description": "Tools in the multi_agent_v1 namespace.",
         "tools": [{"type": "function", "name": "spawn_agent", "parameters": SCHEMA, "strict": False}]},
        {"type": "web_search", "external_web_access": False},
    ]
    return orjson.dumps({"model": "m", "input": "hi", "tools": tools, "store": False, **extra})


def test_codex_namespace_tools_flatten_and_hosted_tools_stay_out() -> None:
    req = openai_responses.parse_request(_codex_body())
    assert [(t.name, t.namespace) for t in req.tools] == [("exec_command", None),
                                                          ("multi_agent_v1__spawn_agent", "multi_agent_v1")]


def test_a_call_to_a_namespaced_tool_goes_back_under_its_namespace_and_returns_joined() -> None:
    req = openai_responses.parse_request(_codex_body())
    answer = ChatResponse(id="r", model="m", finish_reason="tool_use",
                          content=[ToolCall("call_1", "multi_agent_v1__spawn_agent", '{"path":"a"}')])
    whole = orjson.loads(openai_responses.render_response(answer, "m", "r1", request=req))["output"][0]
    renderer = openai_responses.renderer("m", "r1", True, req)
    streamed = [orjson.loads(d) for _, d in renderer.render(Complete(answer))]
    done = next(e for e in streamed if e["type"] == "response.completed")["response"]["output"][0]
    for item in (whole, done):
        assert (item["name"], item["namespace"]) == ("spawn_agent", "multi_agent_v1")
    history = [{"role": "user", "content": "hi"}, whole,
               {"type": "function_call_output", "call_id": "call_1", "output": "ok"}]
    again = openai_responses.parse_request(_codex_body(input=history))
    assert again.messages[1].content == [ToolCall("call_1", "multi_agent_v1__spawn_agent", '{"path":"a"}')]
    assert again.messages[2].content == [ToolResult("call_1", "ok", name="multi_agent_v1__spawn_agent")]
