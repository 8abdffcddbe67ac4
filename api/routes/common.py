"""What every client-facing inference route does, whatever its dialect."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from redis.exceptions import RedisError
from starlette.requests import Request
from starlette.responses import Response

from api.answer import answer
from api.auth import authenticate
from api.dialects import Dialect
from api.documents import resolve_files
from api.errors import error_response
from api.limits import check_request, parse_bounded, read_body
from api.resume import parse_event_id, resume
from api.state import state_of
from api.streaming import stream
from api.submission import submit
from shared.errors import GatewayError
from shared.model import ChatRequest

log = logging.getLogger("sluice.api")


async def serve(request: Request, dialect: Dialect, parse: Callable[[bytes], ChatRequest]) -> Response:
    started = time.monotonic()
    state = state_of(request)
    client = ""
    req: ChatRequest | None = None
    try:
        client = authenticate(request, state.clients)
        last_event_id = request.headers.get("last-event-id")
        if last_event_id:  # the same request sent again by a client resuming its stream
            job_id, seq, n = parse_event_id(last_event_id)
            return await resume(state, client, job_id, (seq, n), dialect)
        limits = state.config.request_limits
        req = parse_bounded(parse, await read_body(request, limits.max_body_bytes, limits.body_read_seconds))
        check_request(req, state.config.model(req.model), limits)
        req = await resolve_files(state, client, req)
        ticket = await submit(state, dialect, client, req, request.headers)
        if not req.stream:
            response = await answer(state, dialect, ticket, req, started, request.receive)
        else:
            renderer = dialect.renderer(req.model, ticket.job.id, req.include_usage, req)
            response = await stream(state, dialect, ticket, renderer, started, request.receive)
    except GatewayError as err:
        response = error_response(dialect, err)
    except RedisError:
        # Redis unreachable or saturated: a retryable 503 in the client's own protocol, never a bare 500
        log.exception("redis unavailable", extra={"path": request.url.path})
        response = error_response(dialect, GatewayError(
            "upstream_unavailable", "The queue is unavailable; retry shortly.", status=503, retry_after=1.0))
    # Every request for a configured model is counted once, with the status it got (names a
    # client made up stay out: they would grow the metric's label set without bound).
    if req is not None and state.config.model(req.model) is not None:
        state.metrics.request(client, req.model, dialect.name, response.status_code)
    return response
