"""A whole (non-streamed) answer: wait for the job's result and render it in one response."""

from __future__ import annotations

import logging

from starlette.responses import Response
from starlette.types import Receive

from api.dialects import Dialect
from api.fallback import Fallbacks
from api.hangup import ClientLeft, unless_client_leaves
from api.state import AppState
from api.ticket import Ticket
from api.timing import timing_headers
from shared.errors import GatewayError
from shared.model import ChatRequest, Complete, StreamError
from shared.redis.record import decode_events

log = logging.getLogger("sluice.api")

CLIENT_CLOSED = 499  # nginx's status for "the client hung up first"; it only shows in metrics


async def answer(state: AppState, dialect: Dialect, ticket: Ticket, req: ChatRequest, started: float,
                 receive: Receive | None = None) -> Response:
    """With `receive`, a client that hangs up takes its job out of the queue (see below)."""
    current = Fallbacks(state, dialect, ticket)
    try:
        if receive is None:
            return await _answer(state, dialect, current, req, started)
        return await _answer_unless_abandoned(state, dialect, current, req, started, receive)
    finally:
        state.dispatcher.release(current.ticket)


async def _answer_unless_abandoned(state: AppState, dialect: Dialect, current: Fallbacks, req: ChatRequest,
                                   started: float, receive: Receive) -> Response:
    """A client that hangs up (an SDK timeout, usually followed by a retry) takes its job out of
    the queue, or has its upstream call aborted, so an abandoned request does not spend the
    account's budget as a duplicate. Streams get a grace period to resume first (api/cancel.py)."""
    try:
        return await unless_client_leaves(_answer(state, dialect, current, req, started), receive)
    except ClientLeft:
        pass
    ticket = current.ticket
    if ticket.follows:
        return Response(b"", CLIENT_CLOSED)  # an Idempotency-Key retry left: the first request runs on
    if await state.dispatcher.withdraw(ticket.job):
        log.info("client left; queued job dropped", extra={"request_id": ticket.job.id})
    else:  # a worker has it: abort the upstream call (api/cancel.py)
        await state.dispatcher.cancels.abort_running(ticket.job.id)
        log.info("client left; running job aborted", extra={"request_id": ticket.job.id})
    return Response(b"", CLIENT_CLOSED)


async def _answer(state: AppState, dialect: Dialect, current: Fallbacks, req: ChatRequest,
                  started: float) -> Response:
    while True:
        ticket = current.ticket
        try:
            return await _answer_one(state, dialect, ticket, req, started)
        except GatewayError as err:
            state.dispatcher.release(ticket)
            if await current.next(err) is None:
                raise


async def _answer_one(state: AppState, dialect: Dialect, ticket: Ticket, req: ChatRequest, started: float) -> Response:
    """The ticket's answer; its error (the worker's, or the wait running out) is raised."""
    async for entry in ticket.entries(state.config.queue.keepalive_seconds):
        if entry is None:
            continue
        for event in decode_events(entry[1]):
            if isinstance(event, Complete):
                body = dialect.render_response(event.response, req.model, ticket.job.id, req)
                headers, overhead = timing_headers(event.timing, started)
                headers["x-sluice-request-id"] = ticket.job.id
                state.metrics.usage(ticket.job.client, event.response.usage)
                if event.timing is not None:
                    state.metrics.timing(req.model, event.timing, overhead)
                return Response(body, 200, headers=headers, media_type="application/json")
            if isinstance(event, StreamError):
                raise GatewayError.from_info(event.error)
    raise GatewayError("internal", "the answer ended without a result")
