"""HTTP to the provider: one pooled keep-alive client per process, SSE read as it arrives."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import httpx

from shared.config import Account
from shared.errors import GatewayError
from shared.model import ChatResponse, StreamEvent
from shared.protocols.sse import SseParser
from worker.providers.base import Provider, UpstreamRequest


def make_client(account: Account) -> httpx.AsyncClient:
    connections = max(16, account.limits.concurrency + 8)
    return httpx.AsyncClient(
        timeout=httpx.Timeout(account.timeout_seconds, connect=10.0),
        limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
        trust_env=False,  # never route provider traffic through an ambient proxy
    )


class UpstreamResult:
    """What a call saw besides its body: status and headers (rate-limit hints), and its timing."""

    def __init__(self) -> None:
        self.headers: dict[str, str] = {}
        self.status = 0
        self.sent_at = 0.0  # monotonic
        self.done_at = 0.0


def _transport_error(exc: httpx.HTTPError) -> GatewayError:
    if isinstance(exc, httpx.TimeoutException):
        return GatewayError("upstream_timeout", "the upstream provider timed out", retryable=True)
    return GatewayError("upstream_unavailable", f"cannot reach the upstream provider ({type(exc).__name__})",
                        retryable=True)


async def call(client: httpx.AsyncClient, provider: Provider, req: UpstreamRequest,
               seen: UpstreamResult) -> ChatResponse:
    seen.sent_at = time.monotonic()
    try:
        response = await client.post(req.url, headers=req.headers, content=req.body)
    except httpx.HTTPError as exc:
        raise _transport_error(exc) from None
    seen.done_at = time.monotonic()
    seen.status = response.status_code
    seen.headers = dict(response.headers)
    if response.status_code >= 400:
        raise provider.parse_error(response.status_code, response.content, seen.headers)
    try:
        return provider.parse_response(response.content)
    except (ValueError, KeyError, TypeError) as exc:
        raise GatewayError("upstream_unavailable", f"unreadable upstream answer ({type(exc).__name__})",
                           status=502) from None


async def stream(client: httpx.AsyncClient, provider: Provider, req: UpstreamRequest,
                 seen: UpstreamResult) -> AsyncIterator[list[StreamEvent]]:
    parser = provider.stream_parser()
    frames = SseParser()
    seen.sent_at = time.monotonic()
    try:
        async with client.stream("POST", req.url, headers=req.headers, content=req.body) as response:
            seen.status = response.status_code
            seen.headers = dict(response.headers)
            if response.status_code >= 400:
                body = await response.aread()
                raise provider.parse_error(response.status_code, body, seen.headers)
            async for chunk in response.aiter_bytes():
                events: list[StreamEvent] = []
                for frame in frames.feed(chunk):
                    events.extend(parser.feed(frame))
                if events:
                    yield events
                if parser.done:
                    return
    except httpx.HTTPError as exc:
        raise _transport_error(exc) from None
    seen.done_at = time.monotonic()
    tail: list[StreamEvent] = []
    for frame in frames.finish():
        tail.extend(parser.feed(frame))
    tail.extend(parser.finish())
    if tail:
        yield tail
