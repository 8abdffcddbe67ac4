"""Bounds on what one request may carry, checked before anything is queued.

The body is read through `read_body`: a Content-Length over the cap is refused before a byte of
the body is read, and a body sent without one (chunked) is cut off as soon as it passes the cap,
so a hostile client can make the process hold at most `max_body_bytes`. What the body decodes
to is then bounded by `check_request` / `check_embedding` (shared/bounds.py, which batch lines
are checked with too).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TypeVar

from starlette.requests import Request

from shared.bounds import check_embedding, check_request
from shared.errors import GatewayError, invalid

__all__ = ["check_embedding", "check_request", "parse_bounded", "read_body", "too_large"]

T = TypeVar("T")


def too_large(limit: int) -> GatewayError:
    return GatewayError("request_too_large", f"The request body is larger than the limit of {limit} bytes.",
                        status=413)


async def read_body(request: Request, limit: int, seconds: float = 60.0) -> bytes:
    """The whole body, refused past `limit` bytes or `seconds` (a client trickling its body in
    must not hold a connection and its buffer for ever)."""
    try:
        async with asyncio.timeout(seconds):
            return await _read_body(request, limit)
    except TimeoutError:
        raise GatewayError("request_timeout", f"The request body did not arrive within {seconds:g} seconds.",
                           status=408) from None


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise invalid("The Content-Length header is not a number.", "content-length") from None
        if size > limit:
            raise too_large(limit)
    chunks: list[bytes] = []
    total = 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            raise too_large(limit)
        chunks.append(chunk)
    body = b"".join(chunks)
    # Starlette's own cache of the body, which `stream()` and `body()` serve from: a route that
    # reads the body before handing the request on (stored Responses) does not read it twice.
    request._body = body
    return body


def parse_bounded(parse: Callable[[bytes], T], body: bytes) -> T:
    """`parse`, with JSON nested past what the decoder can recurse into made a 400, not a crash."""
    try:
        return parse(body)
    except RecursionError:
        raise invalid("The request body is nested too deeply.") from None
