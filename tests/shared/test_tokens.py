"""The cheap input-token estimate (shared/tokens.py): reservations and Anthropic's count_tokens."""

from __future__ import annotations

from shared.model import ChatRequest, Image, Message, Reasoning, Text, Tool, ToolCall, ToolResult
from shared.tokens import IMAGE_TOKENS, MESSAGE_FRAMING_CHARS, estimate_input_tokens


def _req(*parts: Text | Image | ToolCall | ToolResult | Reasoning, **kwargs: object) -> ChatRequest:
    return ChatRequest(model="m", messages=[Message("user", list(parts))], **kwargs)  # type: ignore[arg-type]


def test_about_four_characters_a_token_rounded_up() -> None:
    assert estimate_input_tokens(_req(Text("x" * 400)), framing_chars=0) == 100
    assert estimate_input_tokens(_req(Text("x" * 401)), framing_chars=0) == 101
    assert estimate_input_tokens(_req(Text("")), framing_chars=0) == 0


def test_every_kind_of_content_counts() -> None:
    base = estimate_input_tokens(_req(Text("")))
    for part in (ToolCall("id", "name", '{"k": 1}'), ToolResult("id", "result text"),
                 Reasoning("thought", redacted="opaque"), Text("words")):
        assert estimate_input_tokens(_req(part)) > base, part
    assert estimate_input_tokens(_req(Image(url="https://x/cat.png"))) == base + IMAGE_TOKENS


def test_system_tools_and_turn_framing_count() -> None:
    plain = estimate_input_tokens(_req(Text("hi")))
    assert estimate_input_tokens(_req(Text("hi"), system=[Text("s" * 40)])) == plain + 10
    tool = Tool("get_weather", {"type": "object", "properties": {"city": {"type": "string"}}}, "Weather now")
    assert estimate_input_tokens(_req(Text("hi"), tools=[tool])) > plain
    two_turns = ChatRequest(model="m", messages=[Message("user", [Text("hi")]), Message("assistant", [Text("")])])
    assert estimate_input_tokens(two_turns, framing_chars=MESSAGE_FRAMING_CHARS) > plain


def test_image_rate_and_framing_are_the_callers_choice() -> None:
    req = _req(Image(data="AAAA", media_type="image/png"), Image(url="https://x/y.png"))
    assert estimate_input_tokens(req, image_tokens=1600, framing_chars=0) == 3200
