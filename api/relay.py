"""From a normalized request to the client's answer, in the client's own dialect.

Streams are SSE whose every frame carries `id: <job>.<seq>.<n>`: the job, the stream record
entry, and the frame's position among the frames rendered from that entry. A client that
reconnects with `Last-Event-ID` (to any API process) gets exactly the frames after that one:
the record is replayed through a fresh renderer and everything up to the id is discarded.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import redis.asyncio as aioredis
from starlette.datastructures import Headers
from starlette.responses import Response, StreamingResponse
from starlette.types import Receive

from api.auth import ClientKeys
from api.dialects import DIALECTS, Dialect, Renderer
from api.dispatch import Dispatcher, Ticket
from api.metrics import Metrics
from shared.config import Config
from shared.errors import GatewayError, invalid
from shared.jobs import Priority, decode_events, encode_events
from shared.model import (
    TERMINAL_EVENTS,
    ChatRequest,
    Complete,
    MessageStart,
    StreamError,
    Timing,
    Usage,
    UsageEvent,
)
from shared.protocols.sse import frame

log = logging.getLogger("sluice.api")

SSE_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}


@dataclass(slots=True)
class AppState:
    config: Config
    redis: aioredis.Redis
    dispatcher: Dispatcher
    clients: ClientKeys  # client key digests -> client names
    metrics: Metrics


def error_response(dialect: Dialect, err: GatewayError) -> Response:
    status, body, headers = dialect.render_error(err)
    return Response(body, status, headers=headers, media_type="application/json")


def _priority(headers: Headers) -> Priority:
    value = headers.get("x-sluice-priority", "interactive")
    if value not in ("interactive", "batch"):
        raise invalid("The x-sluice-priority header must be 'interactive' or 'batch'.", "x-sluice-priority")
    return value  # type: ignore[return-value]


def _max_wait(headers: Headers) -> float | None:
    raw = headers.get("x-sluice-max-wait")
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        raise invalid("The x-sluice-max-wait header must be a number of seconds.", "x-sluice-max-wait") from None
    if not 0 <= value <= 86400:
        raise invalid("The x-sluice-max-wait header must be between 0 and 86400.", "x-sluice-max-wait")
    return value


async def handle(state: AppState, dialect: Dialect, client: str, req: ChatRequest, headers: Headers,
                 started: float, receive: Receive | None = None) -> Response:
    model = state.config.model(req.model)
    if model is None or model.kind != "chat":
        raise GatewayError("not_found", f"The model '{req.model}' does not exist or is not a chat model.",
                           param="model")
    dispatcher = state.dispatcher
    job = dispatcher.new_job(req, model, "", "", client, _max_wait(headers), _priority(headers))
    job.account, job.upstream_model = await dispatcher.choose_route(model, job.input_estimate + job.output_reserve)
    meta = None
    if req.stream:
        meta = {"dialect": dialect.name, "model": req.model, "client": client,
                "usage": "1" if req.include_usage else "0"}
    ticket = await dispatcher.submit(job, meta)
    if not req.stream:
        try:
            if receive is None:
                return await _respond_once(state, dialect, ticket, req, started)
            return await _respond_unless_abandoned(state, dialect, ticket, req, started, receive)
        finally:
            dispatcher.release(ticket)
    renderer = dialect.renderer(req.model, job.id, req.include_usage, req)
    return await _respond_stream(state, ticket, renderer, dialect, started)


async def _respond_unless_abandoned(state: AppState, dialect: Dialect, ticket: Ticket, req: ChatRequest,
                                    started: float, receive: Receive) -> Response:
    """A client that hangs up (an SDK timeout, usually followed by a retry) takes its job out of
    the queue, so an abandoned request does not spend the account's budget as a duplicate.
    Streams are different: they keep running so the client can resume them."""
    answer = asyncio.ensure_future(_respond_once(state, dialect, ticket, req, started))
    hangup = asyncio.ensure_future(receive())  # the body is read: the next message is the disconnect
    try:
        await asyncio.wait((answer, hangup), return_when=asyncio.FIRST_COMPLETED)
    finally:
        hangup.cancel()
    if answer.done():
        return answer.result()
    answer.cancel()
    if await state.dispatcher.scripts.cancel(state.dispatcher.keys.account(ticket.job.account), ticket.job.id):
        log.info("client left; queued job dropped", extra={"request_id": ticket.job.id})
    state.metrics.request(ticket.job.client, req.model, dialect.name, 499)
    return Response(b"", 499)


def _timing_headers(t: Timing | None, started: float) -> tuple[dict[str, str], float]:
    """`x-sluice-overhead-ms` is everything but the provider's own time, queue wait included.
    For a stream the headers go out with its first event, so "the provider's own time" is its
    time to that first event."""
    total = (time.monotonic() - started) * 1000
    if t is None:
        return {"x-sluice-overhead-ms": f"{total:.2f}"}, total
    relay = max(0.0, (time.time() - t.done_at) * 1000)
    overhead = max(0.0, total - t.upstream_ms)
    timing = (f"queue;dur={t.queue_ms:.2f}, dispatch;dur={t.dispatch_ms:.2f}, upstream;dur={t.upstream_ms:.2f}, "
              f"relay;dur={relay:.2f}, total;dur={total:.2f}")
    return {"x-sluice-overhead-ms": f"{overhead:.2f}", "server-timing": timing}, overhead


async def _respond_once(state: AppState, dialect: Dialect, ticket: Ticket, req: ChatRequest,
                        started: float) -> Response:
    async for item in ticket.entries(state.config.queue.keepalive_seconds):
        if item is None:
            continue
        for event in decode_events(item[1]):
            if isinstance(event, Complete):
                body = dialect.render_response(event.response, req.model, ticket.job.id, req)
                headers, overhead = _timing_headers(event.timing, started)
                headers["x-sluice-request-id"] = ticket.job.id
                metrics = state.metrics
                metrics.request(ticket.job.client, req.model, dialect.name, 200)
                metrics.usage(ticket.job.client, event.response.usage)
                if event.timing is not None:
                    metrics.timing(req.model, event.timing, overhead)
                return Response(body, 200, headers=headers, media_type="application/json")
            if isinstance(event, StreamError):
                err = GatewayError.from_info(event.error)
                state.metrics.request(ticket.job.client, req.model, dialect.name, err.status)
                return error_response(dialect, err)
    raise GatewayError("internal", "the answer ended without a result")


async def _respond_stream(state: AppState, ticket: Ticket, renderer: Renderer, dialect: Dialect,
                          started: float) -> Response:
    """Holds the status line back briefly, so an early failure can still be a real HTTP error."""
    entries = ticket.entries(state.config.queue.keepalive_seconds)
    first = None
    try:
        first = await anext(entries)
    except GatewayError as err:
        state.dispatcher.release(ticket)
        state.metrics.request(ticket.job.client, ticket.job.request.model, dialect.name, err.status)
        return error_response(dialect, err)
    state.metrics.request(ticket.job.client, ticket.job.request.model, dialect.name, 200)
    timing: Timing | None = None
    if first is not None:
        events = decode_events(first[1])
        if len(events) == 1 and isinstance(events[0], StreamError):
            state.dispatcher.release(ticket)
            return error_response(dialect, GatewayError.from_info(events[0].error))
        timing = next((e.timing for e in events if isinstance(e, MessageStart)), None)

    async def replay_first() -> AsyncIterator[tuple[int, bytes] | None]:
        yield first
        async for item in entries:
            yield item

    async def body() -> AsyncIterator[bytes]:
        try:
            async for chunk in sse_frames(_with_late_errors(replay_first(), dialect), renderer,
                                          ticket.job.id, None, dialect,
                                          lambda usage: state.metrics.usage(ticket.job.client, usage)):
                yield chunk
        finally:
            state.dispatcher.release(ticket)

    headers = {**SSE_HEADERS, "x-sluice-stream-url": f"/v1/streams/{ticket.job.id}",
               "x-sluice-request-id": ticket.job.id}
    if first is not None:  # None: a keep-alive came first (a long queue wait); no timing to tell yet
        timing_headers, overhead = _timing_headers(timing, started)
        headers.update(timing_headers)
        if timing is not None:
            state.metrics.timing(ticket.job.request.model, timing, overhead)
    return StreamingResponse(body(), media_type="text/event-stream", headers=headers)


async def _with_late_errors(entries: AsyncIterator[tuple[int, bytes] | None],
                            dialect: Dialect) -> AsyncIterator[tuple[int, bytes] | None]:
    """After the status line has gone out, a deadline can only be reported inside the stream."""
    try:
        async for item in entries:
            yield item
    except GatewayError as err:
        yield 0, encode_events([StreamError(err.info())])


async def sse_frames(entries: AsyncIterator[tuple[int, bytes] | None], renderer: Renderer, job_id: str,
                     after: tuple[int, int] | None, dialect: Dialect,
                     on_usage: Callable[[Usage], None] | None = None) -> AsyncIterator[bytes]:
    ids = dialect.sse_ids
    async for item in entries:
        if item is None:
            yield dialect.keepalive
            continue
        seq, payload = item
        events = decode_events(payload)
        out: list[bytes] = []
        n = 0
        for event in events:
            if on_usage is not None and isinstance(event, UsageEvent):
                on_usage(event.usage)
            for name, data in renderer.render(event):
                if after is None or (seq, n) > after:
                    out.append(frame(data, name, f"{job_id}.{seq}.{n}" if ids else None))
                n += 1
        if out:
            yield b"".join(out)
        if any(isinstance(e, TERMINAL_EVENTS) for e in events):
            return


# --- resume ----------------------------------------------------------------------------------


def parse_event_id(value: str) -> tuple[str, int, int]:
    try:
        job_id, seq, n = value.rsplit(".", 2)
        if not job_id or not job_id.isalnum():
            raise ValueError
        return job_id, int(seq), int(n)
    except ValueError:
        raise invalid("Last-Event-ID is not an id this server sent.", "Last-Event-ID") from None


async def resume(state: AppState, client: str, job_id: str, after: tuple[int, int] | None,
                 fallback: Dialect) -> Response:
    keys = state.dispatcher.keys
    meta = await state.redis.hgetall(keys.out_meta(job_id))  # type: ignore[misc]
    if not meta or meta.get(b"client", b"").decode() != client:
        return error_response(fallback, GatewayError("not_found", "No resumable stream with that id.",
                                                     param="Last-Event-ID"))
    dialect = DIALECTS[meta[b"dialect"].decode()]
    renderer = dialect.renderer(meta[b"model"].decode(), job_id, meta.get(b"usage") == b"1", None)
    entries = _record_entries(state.redis, keys.out(job_id), state.config.queue.keepalive_seconds)
    headers = {**SSE_HEADERS, "x-sluice-stream-url": f"/v1/streams/{job_id}", "x-sluice-request-id": job_id}
    return StreamingResponse(sse_frames(entries, renderer, job_id, after, dialect), media_type="text/event-stream",
                             headers=headers)


async def _record_entries(client: aioredis.Redis, key: str,
                          keepalive: float) -> AsyncIterator[tuple[int, bytes] | None]:
    last = "0-0"
    while True:
        reply = await client.xread({key: last}, count=256, block=int(keepalive * 1000))
        if not reply:
            yield None
            continue
        for entry_id, fields in reply[0][1]:
            last = entry_id.decode()
            yield int(last.split("-")[1]), fields[b"d"]
