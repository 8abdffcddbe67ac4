"""The two contracts every wire-format module fills, as code.

A client-side dialect (`ClientDialect`) is what the API needs to serve one client protocol; an
upstream dialect (`UpstreamDialect`) is what a worker needs to talk to one provider's format.
Each dialect module implements one of them with plain module-level names, and is registered
where it is used with the Protocol as the declared type, so mypy checks every signature:

    client side    api/dialects.py          openai_chat, openai_responses, anthropic_messages, gemini
    upstream side  worker/providers/*.py    openai_chat_upstream, mistral, anthropic_upstream,
                                            gemini_upstream

Modules are pure and synchronous (no sockets, no Redis). Helpers two dialects need live in
`shared/protocols/common.py`, never in a copy.
"""

from __future__ import annotations

from typing import Any, Protocol

from shared.errors import GatewayError
from shared.model import ChatRequest, ChatResponse, StreamEvent
from shared.protocols.sse import SseFrame

Rendered = list[tuple[str | None, bytes]]
"""(SSE event name or None, data) pairs, written by the API as frames in this order."""


class StreamRenderer(Protocol):
    """Internal stream events -> one client's SSE payloads. One instance per client stream."""

    def render(self, event: StreamEvent) -> Rendered: ...


class StreamParser(Protocol):
    """One upstream's SSE frames -> internal stream events. One instance per upstream stream.

    An unreadable chunk ends the stream with a StreamError. `finish` is called when the upstream
    connection ends: a stream that ended before its own terminator yields a StreamError there."""

    done: bool

    def feed(self, frame: SseFrame) -> list[StreamEvent]: ...

    def finish(self) -> list[StreamEvent]: ...


class ClientDialect(Protocol):
    """A client protocol the API serves (request in, answer out, in the client's own shapes)."""

    @property
    def name(self) -> str:
        """Stable id, stored with each job so any API process can resume its stream."""
        ...

    @property
    def sse_ids(self) -> bool:
        """Whether SSE frames carry `id:` lines (in-band resume with Last-Event-ID)."""
        ...

    @property
    def keepalive(self) -> bytes:
        """What an idle stream sends so proxies keep it open."""
        ...

    def parse_request(self, body: bytes, model: str | None = None, stream: bool = False) -> ChatRequest:
        """The client's body -> ChatRequest, or a GatewayError naming the bad field. `model` and
        `stream` are for protocols that carry them in the URL (Gemini); others read the body."""
        ...

    def render_response(self, response: ChatResponse, model: str, request_id: str,
                        request: ChatRequest | None = None) -> bytes:
        """A whole answer as the client's JSON body; `request` (when known) lets a protocol echo
        the settings it was asked with (Responses does)."""
        ...

    def renderer(self, model: str, request_id: str, include_usage: bool,
                 request: ChatRequest | None = None) -> StreamRenderer:
        """A fresh renderer for one stream (also used to replay a stored stream on resume)."""
        ...

    def render_error(self, err: GatewayError) -> tuple[int, bytes, dict[str, str]]:
        """(HTTP status, body, headers) in the client's error convention."""
        ...


class UpstreamDialect(Protocol):
    """A provider wire format a worker speaks. URLs, keys and rate-limit headers are the provider
    adapter's business (worker/providers/), not the format's."""

    def build_request(self, req: ChatRequest, upstream_model: str, default_max_tokens: int = 4096,
                      ) -> dict[str, Any]:
        """The provider's request body. `default_max_tokens` (the job's output reservation) is
        used by formats that require a limit when the client sent none."""
        ...

    def parse_response(self, body: bytes) -> ChatResponse:
        """A whole (non-streamed) answer; an unreadable one is a GatewayError (502)."""
        ...

    def stream_parser(self) -> StreamParser: ...

    def parse_error(self, status: int, body: bytes, headers: dict[str, str]) -> GatewayError:
        """A non-2xx answer -> GatewayError, with the provider's retry hint when it sent one."""
        ...
