"""Helpers the dialects share (shared/protocols/common.py)."""

from __future__ import annotations

import pytest

from shared.errors import GatewayError
from shared.model import (
    BlockStart,
    BlockStop,
    ChatResponse,
    Image,
    Message,
    MessageStart,
    MessageStop,
    Part,
    Reasoning,
    ReasoningDelta,
    StreamEvent,
    Text,
    TextDelta,
    ToolArgsDelta,
    ToolCall,
    ToolResult,
    Usage,
    UsageEvent,
)
from shared.protocols.common import (
    OpenBlock,
    append_turn,
    arguments_object,
    decode_body,
    image_from_url,
    replay,
    split_data_uri,
)
from shared.protocols.contracts import Rendered
from shared.protocols.openai_chat_upstream import _answer_decoder


def test_turns_of_one_role_merge() -> None:
    messages: list[Message] = []
    append_turn(messages, "user", [ToolResult("c1", "21C")])
    append_turn(messages, "user", [Text("thanks")])
    append_turn(messages, "assistant", [Text("ok")])
    assert messages == [Message("user", [ToolResult("c1", "21C"), Text("thanks")]), Message("assistant", [Text("ok")])]


@pytest.mark.parametrize(("url", "expected"), [
    ("data:image/png;base64,AAAA", ("image/png", "AAAA")),
    ("data:;base64,AAAA", ("application/octet-stream", "AAAA")),
    ("data:image/gif,R0lG", ("image/gif", "R0lG")),
])
def test_split_data_uri(url: str, expected: tuple[str, str]) -> None:
    assert split_data_uri(url) == expected


def test_image_from_url() -> None:
    assert image_from_url("data:image/webp;base64,UklG") == Image(data="UklG", media_type="image/webp")
    assert image_from_url("https://x.test/cat.png") == Image(url="https://x.test/cat.png")


@pytest.mark.parametrize(("arguments", "expected"), [
    ('{"city": "Paris"}', {"city": "Paris"}), ("", {}), ("   ", {}), ('{"cut": "of', {}), ("[1, 2]", {}),
])
def test_arguments_object(arguments: str, expected: dict[str, object]) -> None:
    assert arguments_object(arguments) == expected


def test_decode_body_names_the_field() -> None:
    with pytest.raises(GatewayError) as info:
        decode_body(_answer_decoder, b'{"choices": [{"finish_reason": 7}]}')
    assert info.value.status == 400 and info.value.param == "choices[0].finish_reason"
    with pytest.raises(GatewayError, match="not valid JSON"):
        decode_body(_answer_decoder, b"{")


def test_open_block_keeps_one_block_open() -> None:
    blocks = OpenBlock()
    out: list[StreamEvent] = []
    assert blocks.of("reasoning", out) == 0 and blocks.of("reasoning", out) == 0  # reasoning continues
    assert blocks.of("text", out) == 1
    assert blocks.start("tool_call", out, "c1", "f") == 2 and blocks.start("tool_call", out, "c2", "g") == 3
    blocks.close(out)
    blocks.close(out)  # closing twice adds nothing
    assert out == [BlockStart(0, "reasoning"), BlockStop(0), BlockStart(1, "text"), BlockStop(1),
                   BlockStart(2, "tool_call", "c1", "f"), BlockStop(2), BlockStart(3, "tool_call", "c2", "g"),
                   BlockStop(3)]


def test_replay_sends_each_part_as_its_block() -> None:
    seen: list[StreamEvent] = []

    def render(event: StreamEvent) -> Rendered:
        seen.append(event)
        return []

    response = ChatResponse("x", "m", [Reasoning("hm", signature="s", provider="p"), Text("a"),
                                       ToolCall("c1", "f", "{}"), Reasoning(redacted="R", provider="p"),
                                       Image(url="u")],
                            "stop_sequence", Usage(input_tokens=3), stop_sequence="END")
    replay(render, response)
    assert seen == [
        MessageStart("x", "m", input_tokens=3),
        BlockStart(0, "reasoning"), ReasoningDelta(0, "hm", "s", provider="p"), BlockStop(0),
        BlockStart(1, "text"), TextDelta(1, "a"), BlockStop(1),
        BlockStart(2, "tool_call", "c1", "f"), ToolArgsDelta(2, "{}"), BlockStop(2),
        ReasoningDelta(3, redacted="R", provider="p"), BlockStop(3),  # whole, no BlockStart
        UsageEvent(Usage(input_tokens=3)), MessageStop("stop_sequence", "END"),
    ]


def test_replay_lets_a_protocol_render_parts_its_own_way() -> None:
    def render(event: StreamEvent) -> Rendered:
        return [(type(event).__name__, b"")]

    def render_part(i: int, part: Part) -> Rendered:
        return [("part", str(i).encode())]

    out = replay(render, ChatResponse("x", "m", [Text("a"), Text("b")], "end_turn"), render_part)
    assert out == [("MessageStart", b""), ("part", b"0"), ("part", b"1"), ("UsageEvent", b""), ("MessageStop", b"")]
