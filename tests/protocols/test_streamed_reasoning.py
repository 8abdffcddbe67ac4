"""Streamed reasoning keeps what only its maker can read: Anthropic's redacted_thinking blocks and
each signature's provider travel in stream events, so a streamed answer round-trips through any
client protocol back to the provider that made it, as a whole answer always did."""

from __future__ import annotations

from pathlib import Path

import orjson

from shared.model import BlockStart, MessageStart, Reasoning, ReasoningDelta, StreamEvent, TextDelta
from shared.protocols import anthropic_messages, anthropic_upstream, openai_responses, openai_responses_render
from shared.protocols.sse import SseParser
from worker.resume import ResumeFilter

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
REDACTED = "EmwKAhgBEgy3va3pzix/LafPsn4aDFIT2Xlxh0L5L8rLVyIwxtE3rAFBa8cr3qpPkNRj2YfWXGmKDxH4mPnZ5sQ7vB5URj2pabz3iNH4Q=="


def _anthropic_stream(case: str) -> list[StreamEvent]:
    parser = anthropic_upstream.stream_parser()
    frames = SseParser().feed((FIXTURES / "anthropic" / f"{case}.sse").read_bytes())
    return [e for f in frames for e in parser.feed(f)] + parser.finish()


def _render(renderer: openai_responses_render.StreamRenderer | anthropic_messages.StreamRenderer,
            events: list[StreamEvent]) -> list[tuple[str | None, bytes]]:
    return [pair for e in events for pair in renderer.render(e)]


def test_redacted_block_reaches_an_anthropic_client() -> None:
    pairs = _render(anthropic_messages.StreamRenderer("claude", "r1", True), _anthropic_stream("skipped_blocks"))
    starts = [orjson.loads(d)["content_block"] for name, d in pairs if name == "content_block_start"]
    assert starts == [{"type": "redacted_thinking", "data": REDACTED}, {"type": "text", "text": ""}]
    stops = [orjson.loads(d)["index"] for name, d in pairs if name == "content_block_stop"]
    assert stops == [0, 1]


def test_streamed_thinking_round_trips_through_a_responses_client_to_anthropic() -> None:
    """Anthropic upstream stream -> Responses client -> the client sends the items back ->
    the Anthropic upstream body carries the redacted block and the signed thinking untouched."""
    events = _anthropic_stream("skipped_blocks")
    thinking = _anthropic_stream("thinking")
    pairs = _render(openai_responses_render.StreamRenderer("gpt", "r2", True), events)
    final = orjson.loads(pairs[-1][1])["response"]
    signed_pairs = _render(openai_responses_render.StreamRenderer("gpt", "r3", True), thinking)
    signed = orjson.loads(signed_pairs[-1][1])["response"]
    history = [{"role": "user", "content": "q"}, *final["output"], {"role": "user", "content": "again"},
               *signed["output"], {"role": "user", "content": "and again"}]
    req = openai_responses.parse_request(orjson.dumps({"model": "m", "input": history}))
    reasoning = [p for m in req.messages for p in m.content if isinstance(p, Reasoning)]
    assert reasoning[0] == Reasoning(redacted=REDACTED, provider="anthropic")
    assert reasoning[1].provider == "anthropic" and reasoning[1].signature
    blocks = [b for turn in anthropic_upstream.build_request(req, "claude")["messages"] for b in turn["content"]]
    assert {"type": "redacted_thinking", "data": REDACTED} in blocks
    assert any(b["type"] == "thinking" and b["signature"] == reasoning[1].signature for b in blocks)


def test_another_providers_signature_is_not_shown_as_anthropics() -> None:
    renderer = anthropic_messages.StreamRenderer("claude", "r4", True)
    events: list[StreamEvent] = [MessageStart("x", "m"), BlockStart(0, "reasoning"),
                                 ReasoningDelta(0, "hm"), ReasoningDelta(0, signature="GEMINI-SIG", provider="gemini"),
                                 ReasoningDelta(0, signature="CLAUDE-SIG", provider="anthropic"), TextDelta(1, "a")]
    deltas = [orjson.loads(d)["delta"] for name, d in _render(renderer, events) if name == "content_block_delta"]
    assert {"type": "signature_delta", "signature": "CLAUDE-SIG"} in deltas
    assert all(d.get("signature") != "GEMINI-SIG" for d in deltas)  # as render_response does


def test_a_re_run_keeps_a_redacted_block_its_predecessor_never_wrote() -> None:
    already: list[StreamEvent] = [MessageStart("x", "m"), BlockStart(0, "reasoning"), ReasoningDelta(0, "abc")]
    rerun = ResumeFilter(already).filter([ReasoningDelta(0, "abcdef"), ReasoningDelta(1, redacted="R", provider="p")])
    assert rerun == [ReasoningDelta(0, "def"), ReasoningDelta(1, redacted="R", provider="p")]
