"""Stored Responses: `POST /v1/responses` with `store` (default true) and `previous_response_id`,
`GET`/`DELETE /v1/responses/{id}` and `GET /v1/responses/{id}/input_items`.

The answer itself goes through `serve` (api/routes/common.py) like any request; around it, this module
rebuilds a chained conversation from the stored record before enqueueing (so any upstream gets
the whole history in its own format), and stores the finished answer: a whole answer before it
is returned, a stream just before its final event is sent, so a client that reads the end of
its answer can chain from it at once. Records: shared/redis/stored_responses.py.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter
from redis.exceptions import RedisError
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from api.auth import authenticate
from api.dialects import OPENAI_RESPONSES
from api.errors import error_response
from api.limits import parse_bounded, read_body
from api.routes.common import serve
from api.state import AppState, state_of
from shared.errors import GatewayError, invalid
from shared.model import TERMINAL_EVENTS, ChatRequest
from shared.protocols import openai_responses, openai_responses_items
from shared.protocols.openai_responses_items import StoringDialect
from shared.protocols.openai_responses_render import Storage
from shared.redis import record, stored_responses
from shared.redis.stored_responses import StoredResponse

log = logging.getLogger("sluice.api")
router = APIRouter()

_ABANDONED_WAIT_SECONDS = 3600.0  # how long a stream the client left may run on and still be stored
_pending: set[asyncio.Task[None]] = set()  # background stores, referenced until done
# The SSE events a Responses stream ends with when it produced an answer worth storing.
_FINAL_EVENTS = (b"event: response.completed\n", b"event: response.incomplete\n")


class _Store:
    """What one request stores once its answer is in the record."""

    def __init__(self, state: AppState, client: str, req: ChatRequest, items: list[dict[str, Any]],
                 previous: str | None) -> None:
        self.state, self.client, self.req, self.items, self.previous = state, client, req, items, previous

    async def save(self, job_id: str) -> StoredResponse | None:
        state = self.state
        entries = await record.read(state.redis, state.dispatcher.keys.out(job_id))
        answer = stored_responses.fold([e for _, payload in entries for e in record.decode_events(payload)])
        if answer is None:
            return None  # failed answers are not kept: nothing to chain from
        stored = StoredResponse(job_id, int(time.time()), self.req, answer, self.items, self.previous)
        await stored_responses.save(state.redis, state.config.key_prefix, self.client, stored,
                                    state.config.responses.ttl_seconds)
        return stored

    async def around(self, job_id: str, body: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        stored = False
        try:
            async for chunk in body:
                if not stored and any(final in chunk for final in _FINAL_EVENTS):
                    stored = True
                    try:
                        await self.save(job_id)
                    except RedisError:
                        log.exception("could not store a streamed response", extra={"request_id": job_id})
                yield chunk
        finally:
            if not stored:  # the client left mid-stream: the job runs on, so store it when it ends
                task = asyncio.get_running_loop().create_task(self._save_when_finished(job_id))
                _pending.add(task)
                task.add_done_callback(_pending.discard)

    async def _save_when_finished(self, job_id: str) -> None:
        redis, key = self.state.redis, self.state.dispatcher.keys.out(job_id)
        seq, deadline = 0, time.monotonic() + _ABANDONED_WAIT_SECONDS
        try:
            while time.monotonic() < deadline:
                entries = await record.read_after(redis, key, seq, 256, 5000)
                seq = entries[-1][0] if entries else seq
                if any(isinstance(e, TERMINAL_EVENTS) for _, payload in entries for e in record.decode_events(payload)):
                        await self.save(job_id)
                        return
        except RedisError:
            log.exception("could not store an abandoned stream", extra={"request_id": job_id})


async def create(request: Request) -> Response:
    """Resolves `previous_response_id` and picks the storing dialect, then serves the request
    like any other (api/routes/common.py), then stores its answer."""
    if request.headers.get("last-event-id"):  # a client resuming its stream: the original request stores
        return await serve(request, OPENAI_RESPONSES, openai_responses.parse_request)
    state = state_of(request)
    try:
        client = authenticate(request, state.clients)
        limits = state.config.request_limits  # the same bounds as every route (serve checks the rest)
        body = await read_body(request, limits.max_body_bytes, limits.body_read_seconds)
        wire = parse_bounded(openai_responses.decode, body)
        req = openai_responses.to_request(wire)
        if wire.previous_response_id is not None:
            previous = await _load(state, client, wire.previous_response_id, "previous_response_id")
            stored_responses.continue_from(previous, req)
    except GatewayError as err:
        return error_response(OPENAI_RESPONSES, err)
    except RedisError:
        return _unavailable(request)
    store = wire.store is not False  # OpenAI's default is to store
    response = await serve(request, StoringDialect(Storage(store, wire.previous_response_id)), lambda _: req)
    if not store or response.status_code != 200:
        return response
    job_id = response.headers["x-sluice-request-id"]
    saver = _Store(state, client, req, openai_responses_items.input_items(wire.input or [], job_id),
                   wire.previous_response_id)
    if isinstance(response, StreamingResponse):
        response.body_iterator = saver.around(job_id, response.body_iterator)  # type: ignore[arg-type]
    else:
        try:
            await saver.save(job_id)
        except RedisError:  # the answer is good: returned unstored rather than retried as a duplicate job
            log.exception("could not store a response", extra={"request_id": job_id})
    return response


async def _load(state: AppState, client: str, response_id: str, param: str) -> StoredResponse:
    """The caller's own stored response; anyone else's, an expired or a made-up id is a 404."""
    stored = None
    if response_id.startswith("resp_"):
        stored = await stored_responses.load(state.redis, state.config.key_prefix, client, response_id[5:])
    if stored is None:
        raise GatewayError("not_found", f"Response with id '{response_id}' not found.", param=param)
    return stored


def _unavailable(request: Request) -> Response:
    """Redis unreachable or saturated: a retryable 503 in OpenAI's shape, never a bare 500."""
    log.exception("redis unavailable", extra={"path": request.url.path})
    return error_response(OPENAI_RESPONSES, GatewayError(
        "upstream_unavailable", "The store is unavailable; retry shortly.", status=503, retry_after=1.0))


@router.get("/v1/responses/{response_id}")
async def retrieve(response_id: str, request: Request) -> Response:
    state = state_of(request)
    try:
        client = authenticate(request, state.clients)
        if request.query_params.get("stream", "false") != "false":
            raise GatewayError("unsupported", "A stored response is retrieved whole: 'stream' is not supported.",
                               param="stream")
        stored = await _load(state, client, response_id, "response_id")
        return Response(openai_responses_items.stored_response(stored), media_type="application/json")
    except GatewayError as err:
        return error_response(OPENAI_RESPONSES, err)
    except RedisError:
        return _unavailable(request)


@router.delete("/v1/responses/{response_id}")
async def delete(response_id: str, request: Request) -> Response:
    state = state_of(request)
    try:
        client = authenticate(request, state.clients)
        gone = response_id.startswith("resp_") and await stored_responses.delete(
            state.redis, state.config.key_prefix, client, response_id[5:])
        if not gone:
            raise GatewayError("not_found", f"Response with id '{response_id}' not found.", param="response_id")
        return Response(openai_responses_items.deleted(response_id[5:]), media_type="application/json")
    except GatewayError as err:
        return error_response(OPENAI_RESPONSES, err)
    except RedisError:
        return _unavailable(request)


@router.get("/v1/responses/{response_id}/input_items")
async def input_items(response_id: str, request: Request, after: str | None = None, before: str | None = None,
                      limit: str | None = None, order: str | None = None) -> Response:
    state = state_of(request)
    try:
        client = authenticate(request, state.clients)
        if limit is not None and not limit.isdigit():
            raise invalid("'limit' must be an integer between 1 and 100.", "limit")
        stored = await _load(state, client, response_id, "response_id")
        size = None if limit is None else int(limit)
        page = openai_responses_items.item_page(stored.input_items, after, before, size, order)
        return Response(page, media_type="application/json")
    except GatewayError as err:
        return error_response(OPENAI_RESPONSES, err)
    except RedisError:
        return _unavailable(request)
