"""Streams keep every reasoning block: a redacted_thinking block and the provider of a signature
survive a stream, as they survive a whole answer (tests/fixtures/{anthropic,gemini}/*.sse are
recorded upstream streams)."""

from __future__ import annotations

from pathlib import Path

import orjson

from shared.model import Message, Reasoning, StreamEvent
from shared.protocols import anthropic_messages as am
from shared.protocols import gemini, openai_responses
from shared.protocols.sse import SseParser

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


def _events(dialect: str, case: str) -> list[StreamEvent]:
    parser = am.StreamParser() if dialect == "anthropic" else gemini.StreamParser()
    sse = SseParser()
    events: list[StreamEvent] = []
    for frame in [*sse.feed((FIXTURES / dialect / f"{case}.sse").read_bytes()), *sse.finish()]:
        events += parser.feed(frame)
    return events + parser.finish()


def _anthropic_out(events: list[StreamEvent]) -> list[dict[str, object]]:
    renderer = am.StreamRenderer("m", "r1", True)
    return [orjson.loads(data) for event in events for name, data in renderer.render(event) if name != "ping"]


def test_a_streamed_redacted_block_reaches_an_anthropic_client() -> None:
    out = _anthropic_out(_events("anthropic", "skipped_blocks"))
    starts = [e["content_block"] for e in out if e["type"] == "content_block_start"]
    assert starts[0] == {"type": "redacted_thinking", "data": "EmwKAhgBEgy3va3pzix/LafPsn4aDFIT2Xlxh0L5L8rLVyIwxtE3rAFB"
                                                              "a8cr3qpPkNRj2YfWXGmKDxH4mPnZ5sQ7vB5URj2pabz3iNH4Q=="}
    assert [e["index"] for e in out if e["type"] == "content_block_stop"] == [0, 1]  # its own block, closed


def _responses_reasoning(events: list[StreamEvent]) -> list[Reasoning]:
    """What a Responses client sends back next turn: the streamed reasoning items, parsed again."""
    renderer = openai_responses.StreamRenderer("m", "r1", True)
    done = [orjson.loads(data) for event in events for _, data in renderer.render(event)]
    final = next(e for e in done if e["type"] == "response.completed")["response"]
    items = [i for i in final["output"] if i["type"] == "reasoning"]
    body = {"model": "m", "input": [{"role": "user", "content": "hi"}, *items]}
    parsed = openai_responses.parse_request(orjson.dumps(body))
    return [p for m in parsed.messages for p in m.content if isinstance(p, Reasoning)]


def test_streamed_anthropic_signatures_and_redacted_blocks_keep_their_provider() -> None:
    (redacted,) = _responses_reasoning(_events("anthropic", "skipped_blocks"))
    assert redacted.provider == "anthropic" and redacted.redacted and redacted.redacted.startswith("EmwK")
    (signed,) = _responses_reasoning(_events("anthropic", "thinking"))
    assert signed.provider == "anthropic" and signed.signature and signed.signature.startswith("EqQB")
    # ...so they go back to Anthropic, byte-identical, and nowhere else
    turn = am._messages_out([Message("assistant", [signed])])[0]["content"][0]
    assert turn == {"type": "thinking", "thinking": signed.text, "signature": signed.signature}


def test_a_streamed_gemini_signature_is_not_shown_to_an_anthropic_client_as_anthropic_s() -> None:
    events = _events("gemini", "thinking")
    assert any(getattr(e, "signature", None) for e in events)  # the upstream stream has one
    out = _anthropic_out(events)
    assert not [e for e in out if e["type"] == "content_block_delta" and e["delta"]["type"] == "signature_delta"]
    (kept,) = [r for r in _responses_reasoning(events) if r.signature]
    assert kept.provider == "gemini"  # and a Responses client's next turn still knows whose it is
