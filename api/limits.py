"""Bounds on what one request may carry, checked before anything is queued.

The body is read through `read_body`: a Content-Length over the cap is refused before a byte of
the body is read, and a body sent without one (chunked) is cut off as soon as it passes the cap,
so a hostile client can make the process hold at most `max_body_bytes`. What the body decodes
to is then bounded by `check_request` (messages, content parts, string lengths, open-JSON depth,
`max_tokens` against the model's limit).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from starlette.requests import Request

from shared.config import Model, RequestLimits
from shared.errors import GatewayError, invalid
from shared.model import ChatRequest, Reasoning, Text, ToolCall, ToolResult


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
    return b"".join(chunks)


def parse_bounded(parse: Callable[[bytes], ChatRequest], body: bytes) -> ChatRequest:
    """`parse`, with JSON nested past what the decoder can recurse into made a 400, not a crash."""
    try:
        return parse(body)
    except RecursionError:
        raise invalid("The request body is nested too deeply.") from None


def check_request(req: ChatRequest, model: Model | None, limits: RequestLimits) -> None:
    if len(req.messages) > limits.max_messages:
        raise invalid(f"Too many messages: {len(req.messages)} (the limit is {limits.max_messages}).", "messages")
    parts = 0
    longest = max((len(t.text) for t in req.system), default=0)
    for message in req.messages:
        parts += len(message.content)
        for part in message.content:
            longest = max(longest, _length(part))
    if parts > limits.max_content_parts:
        raise invalid(f"Too many content parts: {parts} (the limit is {limits.max_content_parts}).", "messages")
    if longest > limits.max_string_chars:
        raise invalid(f"A text of {longest} characters is longer than the limit of {limits.max_string_chars}.",
                      "messages")
    for i, tool in enumerate(req.tools):
        if _depth(tool.parameters) > limits.max_json_depth:
            raise invalid(f"The tool's parameters are nested deeper than {limits.max_json_depth} levels.",
                          f"tools[{i}]")
    if req.response_format is not None and _depth(req.response_format.schema) > limits.max_json_depth:
        raise invalid(f"The response format's schema is nested deeper than {limits.max_json_depth} levels.",
                      "response_format")
    if model is not None and model.max_tokens is not None and req.max_tokens is not None \
            and req.max_tokens > model.max_tokens:
        raise invalid(f"max_tokens is {req.max_tokens}, above the model's limit of {model.max_tokens}.",
                      "max_tokens")


def _length(part: object) -> int:
    if isinstance(part, Text | Reasoning):
        return len(part.text)
    if isinstance(part, ToolCall):
        return len(part.arguments)
    if isinstance(part, ToolResult):
        return len(part.content)
    return 0


def _depth(value: Any, limit: int = 1000) -> int:
    """Nesting depth of decoded JSON, iteratively (a recursive walk is what a deep value attacks)."""
    deepest = 0
    todo: list[tuple[Any, int]] = [(value, 1)]
    while todo:
        item, depth = todo.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, depth)
            if deepest > limit:
                return deepest
            todo.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return deepest
