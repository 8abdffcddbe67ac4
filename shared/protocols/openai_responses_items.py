"""Stored Responses in OpenAI's shapes: the Responses dialect for a request whose answer says
what is stored (`StoringDialect`), a stored response re-rendered for `GET /v1/responses/{id}`,
its input items (as the client sent them, with ids) and their cursor pages for
`GET /v1/responses/{id}/input_items`, and the deletion receipt. Pure; the Redis side is
shared/redis/stored_responses.py, the routes api/routes/stored_responses.py.
"""

from __future__ import annotations

from typing import Any, Literal

import orjson

from shared.errors import GatewayError, invalid
from shared.model import ChatRequest, ChatResponse
from shared.protocols import openai_responses
from shared.protocols.contracts import StreamRenderer
from shared.protocols.openai_responses_render import Storage, render_response, renderer
from shared.redis.stored_responses import StoredResponse

_ID_PREFIX = {"message": "msg", "function_call": "fc", "function_call_output": "fco", "reasoning": "rs"}
_INPUT_TEXT = {"user": "input_text", "system": "input_text", "developer": "input_text", "assistant": "output_text"}
MAX_LIMIT = 100


def input_items(raw: str | list[dict[str, Any]], request_id: str) -> list[dict[str, Any]]:
    """The client's `input` as listable items: every item typed, with an id and a status, and a
    message's string content as the content part list the SDK's item types expect."""
    given = [{"type": "message", "role": "user", "content": raw}] if isinstance(raw, str) else raw
    items: list[dict[str, Any]] = []
    for i, source in enumerate(given):
        item = dict(source)
        kind = item.setdefault("type", "message")
        item.setdefault("id", f"{_ID_PREFIX.get(kind, 'item')}_{request_id}_{i}")
        item.setdefault("status", "completed")
        if kind == "message":
            part_type = _INPUT_TEXT.get(str(item.get("role")), "input_text")
            content = item.get("content")
            if isinstance(content, str):
                content = [{"type": part_type, "text": content}]
            item["content"] = [_content_part(p) for p in content or []]
        items.append(item)
    return items


def _content_part(part: Any) -> Any:
    if isinstance(part, dict):
        if part.get("type") == "output_text":
            return {"annotations": [], **part}
        if part.get("type") == "input_image":
            return {"detail": "auto", **part}
    return part


def item_page(items: list[dict[str, Any]], after: str | None, before: str | None, limit: int | None,
              order: str | None) -> bytes:
    """One cursor page in OpenAI's list shape. `order` defaults to desc (newest first), as OpenAI's;
    `after`/`before` are item ids of the same listing."""
    if order not in (None, "asc", "desc"):
        raise invalid("'order' must be 'asc' or 'desc'.", "order")
    size = 20 if limit is None else limit
    if not 1 <= size <= MAX_LIMIT:
        raise invalid(f"'limit' must be between 1 and {MAX_LIMIT}.", "limit")
    listed = items if order == "asc" else items[::-1]
    ids = [str(item["id"]) for item in listed]
    start, end = 0, len(listed)
    if after is not None:
        start = _position(ids, after, "after") + 1
    if before is not None:
        end = _position(ids, before, "before")
    window = listed[start:end]
    data = window[:size] if before is None else window[-size:]
    more = len(window) > len(data)
    body = {"object": "list", "data": data, "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None, "has_more": more}
    return orjson.dumps(body)


def _position(ids: list[str], cursor: str, field: Literal["after", "before"]) -> int:
    try:
        return ids.index(cursor)
    except ValueError:
        raise invalid(f"'{field}' is not an item id of this response.", field) from None


class StoringDialect:
    """`openai_responses` for one request, with its Responses saying whether they are stored
    and which response they continue (a `ClientDialect`: the relay renders with it)."""

    name = openai_responses.name
    sse_ids = openai_responses.sse_ids
    keepalive = openai_responses.keepalive

    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    def parse_request(self, body: bytes, model: str | None = None, stream: bool = False) -> ChatRequest:
        return openai_responses.parse_request(body, model, stream)

    def render_response(self, response: ChatResponse, model: str, request_id: str,
                        request: ChatRequest | None = None) -> bytes:
        return render_response(response, model, request_id, request, storage=self.storage)

    def renderer(self, model: str, request_id: str, include_usage: bool,
                 request: ChatRequest | None = None) -> StreamRenderer:
        return renderer(model, request_id, include_usage, request, storage=self.storage)

    def render_error(self, err: GatewayError) -> tuple[int, bytes, dict[str, str]]:
        return openai_responses.render_error(err)


def stored_response(record: StoredResponse) -> bytes:
    """The Response object as `GET /v1/responses/{id}` returns it."""
    storage = Storage(True, record.previous_response_id, record.created_at)
    return render_response(record.response, record.request.model, record.id, record.request, storage=storage)


def deleted(response_id: str) -> bytes:
    return orjson.dumps({"id": f"resp_{response_id}", "object": "response", "deleted": True})
