"""The client-facing dialects the API serves, behind one small interface."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from shared.errors import GatewayError
from shared.model import ChatRequest, ChatResponse, StreamEvent
from shared.protocols import anthropic_messages, gemini, openai_chat, openai_responses


class Renderer(Protocol):
    def render(self, event: StreamEvent) -> list[tuple[str | None, bytes]]: ...


@dataclass(frozen=True, slots=True)
class Dialect:
    name: str
    # (response, public model, request id, the parsed request when known) -> body
    render_response: Callable[[ChatResponse, str, str, ChatRequest | None], bytes]
    # (public model, request id, include usage, the parsed request when known) -> renderer
    renderer: Callable[[str, str, bool, ChatRequest | None], Renderer]
    render_error: Callable[[GatewayError], tuple[int, bytes, dict[str, str]]]
    # The google-genai SDK reads every non-`data:` line as raw JSON, so Gemini streams carry no
    # `id:` lines (no in-band resume) and keep alive with a bare newline instead of a comment.
    sse_ids: bool = True
    keepalive: bytes = b": keep-alive\n\n"


OPENAI_CHAT = Dialect(
    "openai_chat",
    lambda resp, model, rid, req: openai_chat.render_response(resp, model, rid),
    lambda model, rid, usage, req: openai_chat.StreamRenderer(model, rid, usage),
    openai_chat.render_error,
)
OPENAI_RESPONSES = Dialect(
    "openai_responses",
    lambda resp, model, rid, req: openai_responses.render_response(resp, model, rid, request=req),
    lambda model, rid, usage, req: openai_responses.StreamRenderer(model, rid, usage, request=req),
    openai_responses.render_error,
)

ANTHROPIC = Dialect(
    "anthropic_messages",
    lambda resp, model, rid, req: anthropic_messages.render_response(resp, model, rid),
    lambda model, rid, usage, req: anthropic_messages.StreamRenderer(model, rid, usage),
    anthropic_messages.render_error,
)
GEMINI = Dialect(
    "gemini",
    lambda resp, model, rid, req: gemini.render_response(resp, model, rid),
    lambda model, rid, usage, req: gemini.StreamRenderer(model, rid, usage),
    gemini.render_error,
    sse_ids=False,
    keepalive=b"\n",
)

DIALECTS: dict[str, Dialect] = {d.name: d for d in (OPENAI_CHAT, OPENAI_RESPONSES, ANTHROPIC, GEMINI)}
