"""A streamed answer: the job's record entries rendered as SSE in the client's dialect.

Every frame carries `id: <job>.<seq>.<n>`: the job, the record entry, and the frame's position
among the frames rendered from that entry, so a client can resume after any frame (api/resume.py).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

from starlette.responses import Response, StreamingResponse
from starlette.types import Receive

from api.answer import CLIENT_CLOSED
from api.dialects import Dialect, Renderer
from api.errors import error_response
from api.fallback import Fallbacks
from api.hangup import ClientLeft, unless_client_leaves
from api.state import AppState
from api.ticket import Ticket
from api.timing import timing_headers
from shared.errors import GatewayError
from shared.model import TERMINAL_EVENTS, MessageStart, StreamError, StreamEvent, Usage, UsageEvent
from shared.protocols.sse import frame
from shared.redis.record import Entry, decode_events, encode_events

SSE_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}


def stream_headers(job_id: str) -> dict[str, str]:
    return {**SSE_HEADERS, "x-sluice-stream-url": f"/v1/streams/{job_id}", "x-sluice-request-id": job_id}


async def stream(state: AppState, dialect: Dialect, ticket: Ticket, renderer: Renderer, started: float,
                 receive: Receive | None = None) -> Response:
    """Holds the status line back until the first entry, so an early failure can still be a real
    HTTP error. With `receive`, a client that hangs up meanwhile (or later, mid-stream) has its
    job cancelled after the grace period unless it resumes (api/cancel.py)."""
    current = Fallbacks(state, dialect, ticket)
    while True:
        entries = ticket.entries(state.config.queue.keepalive_seconds)
        first = None
        first_events: list[StreamEvent] = []
        try:
            first = await (anext(entries) if receive is None else unless_client_leaves(anext(entries), receive))
            if first is not None:
                first_events = decode_events(first[1])
                if len(first_events) == 1 and isinstance(first_events[0], StreamError):
                    raise GatewayError.from_info(first_events[0].error)
        except GatewayError as err:
            state.dispatcher.release(ticket)
            if await current.next(err) is None:
                return error_response(dialect, err)
            ticket = current.ticket  # a fallback model's job: nothing has been rendered yet
            req = ticket.job.request
            renderer = dialect.renderer(req.model, ticket.job.id, req.include_usage, req)
            continue
        except ClientLeft:
            state.dispatcher.release(ticket)
            _client_left(state, ticket)
            return Response(b"", CLIENT_CLOSED)
        break
    job = ticket.job
    timing = next((e.timing for e in first_events if isinstance(e, MessageStart)), None)

    async def replay_first() -> AsyncIterator[Entry | None]:
        yield first
        async for item in entries:
            yield item

    async def body() -> AsyncIterator[bytes]:
        finished = False
        try:
            async for chunk in sse_frames(_with_late_errors(replay_first()), renderer, job.id, None, dialect,
                                          lambda usage: state.metrics.usage(job.client, usage)):
                yield chunk
            finished = True
        finally:
            state.dispatcher.release(ticket)
            if not finished and receive is not None:
                _client_left(state, ticket)

    headers = stream_headers(job.id)
    if first is not None:  # None: a keep-alive came first (a long queue wait); no timing to tell yet
        more_headers, overhead = timing_headers(timing, started)
        headers.update(more_headers)
        if timing is not None:
            state.metrics.timing(job.request.model, timing, overhead)
    return StreamingResponse(body(), media_type="text/event-stream", headers=headers)



def _client_left(state: AppState, ticket: Ticket) -> None:
    if not ticket.follows:  # an Idempotency-Key retry leaving does not end the first request
        state.dispatcher.cancels.stream_left(ticket.job.id, ticket.job)


async def _with_late_errors(entries: AsyncIterator[Entry | None]) -> AsyncIterator[Entry | None]:
    """After the status line has gone out, a deadline can only be reported inside the stream."""
    try:
        async for entry in entries:
            yield entry
    except GatewayError as err:
        yield 0, encode_events([StreamError(err.info())])


async def sse_frames(entries: AsyncIterator[Entry | None], renderer: Renderer, job_id: str,
                     after: tuple[int, int] | None, dialect: Dialect,
                     on_usage: Callable[[Usage], None] | None = None) -> AsyncIterator[bytes]:
    """The SSE bytes for each entry (None: a keep-alive), skipping every frame up to `after`
    ((seq, n) of the last frame a resuming client has); ends after a terminal event."""
    ids = dialect.sse_ids
    async for entry in entries:
        if entry is None:
            yield dialect.keepalive
            continue
        seq, payload = entry
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
