"""Ollama chat dialect: parse (ids for id-less tool calls, images, options, format), render whole
and streamed (tool calls whole, a final `done` object), errors in Ollama's shape."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from shared.errors import GatewayError
from shared.model import (
    BlockStart,
    BlockStop,
    ChatResponse,
    ErrorInfo,
    Image,
    MessageStart,
    MessageStop,
    StreamError,
    Text,
    TextDelta,
    ToolArgsDelta,
    ToolCall,
    ToolResult,
    Usage,
    UsageEvent,
)
from shared.protocols import ollama

PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="


def body(**fields: Any) -> bytes:
    return orjson.dumps({"model": "m", **fields})


def test_parse_conversation_with_tools_and_images() -> None:
    req = ollama.parse_request(body(
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Look", "images": [PNG]},
            {"role": "assistant", "content": "", "tool_calls": [
                {"function": {"name": "a", "arguments": {"x": 1}}},
                {"function": {"name": "b", "arguments": {}}}]},
            {"role": "tool", "content": "B!", "tool_name": "b"},
            {"role": "tool", "content": "A!"},
        ],
        tools=[{"type": "function", "function": {"name": "a", "parameters": {"type": "object"}}}],
        options={"temperature": 0.5, "num_predict": 64, "stop": ["\n"], "seed": 7, "num_ctx": 8192},
        format={"type": "object"}, stream=False))
    assert req.system == [Text("Be brief.")]
    assert req.messages[0].content == [Text("Look"), Image(data=PNG, media_type="image/png")]
    assert req.messages[1].content == [ToolCall("call_2_0", "a", '{"x":1}'), ToolCall("call_2_1", "b", "{}")]
    assert req.messages[2].content == [ToolResult("call_2_1", "B!", name="b"), ToolResult("call_2_0", "A!", name="a")]
    assert (req.temperature, req.max_tokens, req.stop, req.seed, req.stream) == (0.5, 64, ["\n"], 7, False)
    assert req.response_format is not None and req.response_format.schema == {"type": "object"}
    assert ollama.parse_request(body(messages=[{"role": "user", "content": "x"}])).stream is True
    efforts = [ollama.parse_request(body(messages=[{"role": "user", "content": "x"}], think=t)).reasoning_effort
               for t in (True, False, "high")]
    assert efforts == ["medium", "none", "high"]


@pytest.mark.parametrize(("fields", "param"), [
    ({"messages": [{"role": "tool", "content": "x"}]}, "messages[0].tool_name"),
    ({"messages": [{"role": "user", "content": "x", "images": ["bm90IGFuIGltYWdl"]}]}, "messages[0].images[0]"),
    ({"messages": [{"role": "robot", "content": "x"}]}, "messages[0].role"),
    ({"messages": [{"role": "user", "content": "x"}], "options": {"temperature": 9}}, "options.temperature"),
    ({"messages": [{"role": "user", "content": "x"}], "format": "yaml"}, "format"),
    ({"messages": []}, "messages"),
    ({"messages": [{"role": "user", "content": "x"}], "think": "max"}, "think"),
    ({"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y", "images": [PNG]}]},
     "messages[1].images"),
])
def test_bad_requests_name_the_field(fields: dict[str, Any], param: str) -> None:
    with pytest.raises(GatewayError) as info:
        ollama.parse_request(body(**fields))
    assert info.value.status == 400 and info.value.param == param
    status, raw, _ = ollama.render_error(info.value)
    assert status == 400 and set(orjson.loads(raw)) == {"error"}


def test_render_whole_answer() -> None:
    answer = ChatResponse("r", "up", [Text("Hi"), ToolCall("c1", "a", '{"x": 1}')], "tool_use",
                          Usage(input_tokens=7, output_tokens=3))
    out = orjson.loads(ollama.render_response(answer, "m", "req"))
    assert out["message"] == {"role": "assistant", "content": "Hi",
                              "tool_calls": [{"id": "c1", "function": {"name": "a", "arguments": {"x": 1}}}]}
    assert (out["done"], out["done_reason"], out["prompt_eval_count"], out["eval_count"]) == (True, "stop", 7, 3)


def test_stream_renders_lines_and_whole_tool_calls() -> None:
    r = ollama.renderer("m", "req", True)
    events = [MessageStart("r", "up"), BlockStart(0, "text"), TextDelta(0, "He"), TextDelta(0, "llo"),
              BlockStop(0), BlockStart(1, "tool_call", "c1", "a"), ToolArgsDelta(1, '{"x"'),
              ToolArgsDelta(1, ": 1}"), BlockStop(1), UsageEvent(Usage(5, 2)), MessageStop("max_tokens")]
    lines = [orjson.loads(data) for e in events for name, data in r.render(e) if name is None]
    assert [line["message"]["content"] for line in lines[:2]] == ["He", "llo"]
    assert lines[2]["message"]["tool_calls"] == [{"id": "c1", "function": {"name": "a", "arguments": {"x": 1}}}]
    assert [line["done"] for line in lines] == [False, False, False, True]
    assert (lines[-1]["done_reason"], lines[-1]["prompt_eval_count"], lines[-1]["eval_count"]) == ("length", 5, 2)
    failed = ollama.renderer("m", "req", True).render(StreamError(ErrorInfo("upstream_error", "boom", 502)))
    assert [orjson.loads(data) for _, data in failed] == [{"error": "boom"}]


def test_show_request_takes_either_spelling() -> None:
    assert ollama.parse_show_request(b'{"model": "a"}') == "a"
    assert ollama.parse_show_request(b'{"name": "b"}') == "b"
    with pytest.raises(GatewayError):
        ollama.parse_show_request(b"{}")
