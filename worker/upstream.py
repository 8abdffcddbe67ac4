"""HTTP to the provider: pooled keep-alive connections, SSE read as it arrives.

Two transports behind one small interface, built from the account's egress settings
(worker/egress.py): the lean built-in HTTP/1.1 client (worker/http1.py, the default, cheapest in
CPU per call) and httpx (`http_client: httpx`, worker/httpx_transport.py).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Protocol

import httpx

from shared.config import Account
from shared.errors import GatewayError
from shared.model import ChatResponse, StreamEvent
from shared.protocols.sse import SseParser
from worker import http1
from worker.egress import Egress
from worker.httpx_transport import HttpxTransport
from worker.providers.base import Provider, UpstreamRequest


class Reply(Protocol):
    status: int
    headers: dict[str, str]

    async def read(self) -> bytes: ...

    def iter_bytes(self) -> AsyncIterator[bytes]: ...

    async def aclose(self) -> None:
        """Stops reading. An answer not read to its end has its connection closed at once, so the
        provider sees the hang-up and stops generating (the job was aborted, or the stream broke),
        and a half-read connection never goes back to the pool."""
        ...


class Transport(Protocol):
    async def post(self, url: str, headers: dict[str, str], body: bytes) -> Reply:
        """Sends the request; the caller must read or iterate the body to free the connection."""
        ...

    async def aclose(self) -> None: ...


def make_transport(account: Account) -> Transport:
    connections = max(16, account.limits.concurrency + 8)
    egress = Egress.of(account)  # trust, proxy and timeouts: the same rules for both transports
    if account.http_client == "httpx":
        return HttpxTransport(account.base_url, max_connections=connections, egress=egress)
    return http1.Client(account.base_url, max_connections=connections, egress=egress)


class UpstreamResult:
    """What a call saw besides its body: status and headers (rate-limit hints), and its timing."""

    def __init__(self) -> None:
        self.headers: dict[str, str] = {}
        self.status = 0
        self.sent_at = 0.0  # monotonic
        self.done_at = 0.0


def _transport_error(exc: Exception) -> GatewayError:
    if isinstance(exc, httpx.TimeoutException | http1.HttpTimeout):
        return GatewayError("upstream_timeout", "the upstream provider timed out", retryable=True)
    return GatewayError("upstream_unavailable", f"cannot reach the upstream provider ({exc})", retryable=True)


_TRANSPORT_ERRORS = (httpx.HTTPError, http1.HttpError)

# A provider's answer past this is cut off: a broken or hostile upstream that sends an enormous or
# never-ending body must not grow a worker's memory without bound. Counted here, above the
# transport, so both transports (and chat and embedding calls alike) get it.
MAX_BODY_BYTES = 64 * 1024 * 1024


def _too_large(cap: int) -> GatewayError:
    return GatewayError("upstream_unavailable", f"the upstream answer passed {cap} bytes and was cut off",
                        status=502)


async def _read(reply: Reply, cap: int) -> bytes:
    """The whole body, up to `cap`: a sized body within it is read in one go, anything else is
    counted as it arrives."""
    declared = reply.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) <= cap:
        return await reply.read()
    chunks: list[bytes] = []
    total = 0
    body = reply.iter_bytes()
    try:
        async for chunk in body:
            total += len(chunk)
            if total > cap:
                raise _too_large(cap)
            chunks.append(chunk)
    finally:
        await body.aclose()  # type: ignore[attr-defined]  # frees (or drops) the connection
    return b"".join(chunks)


async def call(transport: Transport, provider: Provider, req: UpstreamRequest, seen: UpstreamResult,
               max_body: int = MAX_BODY_BYTES) -> ChatResponse:
    body = await fetch(transport, provider, req, seen, max_body)
    try:
        return provider.parse_response(body)
    except (ValueError, KeyError, TypeError) as exc:
        raise unreadable(exc) from None


def unreadable(exc: Exception) -> GatewayError:
    return GatewayError("upstream_unavailable", f"unreadable upstream answer ({type(exc).__name__})", status=502)


async def fetch(transport: Transport, provider: Provider, req: UpstreamRequest, seen: UpstreamResult,
                max_body: int = MAX_BODY_BYTES) -> bytes:
    """One whole-answer call: the body of a good answer; an error answer raised as GatewayError."""
    seen.sent_at = time.monotonic()
    try:
        reply = await transport.post(req.url, req.headers, req.body)
        try:
            body = await _read(reply, max_body)
        except BaseException:
            # a cancelled or failed read closes the connection now, so the provider stops
            # generating for a client that is gone
            await reply.aclose()
            raise
    except _TRANSPORT_ERRORS as exc:
        raise _transport_error(exc) from None
    seen.done_at = time.monotonic()
    seen.status = reply.status
    seen.headers = reply.headers
    if reply.status >= 400:
        raise provider.parse_error(reply.status, body, seen.headers)
    return body


async def stream(transport: Transport, provider: Provider, req: UpstreamRequest,
                 seen: UpstreamResult, max_body: int = MAX_BODY_BYTES) -> AsyncIterator[list[StreamEvent]]:
    parser = provider.stream_parser()
    frames = SseParser()
    seen.sent_at = time.monotonic()
    try:
        reply = await transport.post(req.url, req.headers, req.body)
        seen.status = reply.status
        seen.headers = reply.headers
        if reply.status >= 400:
            body = await _read(reply, max_body)
            raise provider.parse_error(reply.status, body, seen.headers)
        chunks = reply.iter_bytes()
        total = 0
        try:
            async for chunk in chunks:
                total += len(chunk)
                if total > max_body:
                    raise _too_large(max_body)
                if parser.done:
                    continue  # read to the end of the body so the connection can be reused
                events: list[StreamEvent] = []
                for frame in frames.feed(chunk):
                    events.extend(parser.feed(frame))
                if events:
                    yield events
        finally:
            await chunks.aclose()  # type: ignore[attr-defined]
            # cancelled (the client left) or failed mid-body: hang up; read to the end: a no-op
            await reply.aclose()
        if parser.done:
            seen.done_at = time.monotonic()
            return
    except _TRANSPORT_ERRORS as exc:
        raise _transport_error(exc) from None
    seen.done_at = time.monotonic()
    tail: list[StreamEvent] = []
    for frame in frames.finish():
        tail.extend(parser.feed(frame))
    tail.extend(parser.finish())
    if tail:
        yield tail
