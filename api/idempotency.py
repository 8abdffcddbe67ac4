"""Idempotency-Key: a client's retry gets the first request's answer, never a second upstream call.

The first request with a (client, key) pair stores "job id + body digest" in one atomic step
(idempotency.lua, through shared/redis/idempotency.py) and is queued as usual, its record kept
as long as the key (`idempotency_ttl_seconds`, 24 h by default). Every later request with that
key is a retry: with the same body it follows the first job's record from its start (on any API
process: a finished answer is replayed, a running one joined, a queued one waited for), so whole
answers come back identical and streams come back frame for frame, with the same SSE ids; with
another body it is a 409 naming the header. A first request withdrawn before it ran (its client
left, or its wait ran out), or failed for a reason other than the request itself (a provider
outage; worker/loop.py), releases the key, so the next retry runs afresh; a provider's 4xx
refusal of the request is replayed.
"""

from __future__ import annotations

import time

import msgspec
from starlette.datastructures import Headers

from api.dialects import Dialect
from api.dispatch import new_job_id
from api.enqueue import enqueue
from api.state import AppState
from api.ticket import Ticket
from shared.errors import GatewayError, invalid
from shared.jobs import Job, Priority
from shared.model import ChatRequest
from shared.redis import idempotency
from shared.redis.record import ReplayInfo

HEADER = "idempotency-key"
MAX_KEY_LENGTH = 255

_encoder = msgspec.json.Encoder()


def idempotency_key(headers: Headers) -> str | None:
    """The client's Idempotency-Key, if it sent one; a clear 400 for one we cannot keep."""
    value = headers.get(HEADER)
    if value is None:
        return None
    if not 0 < len(value) <= MAX_KEY_LENGTH or not value.isprintable() or not value.isascii():
        raise invalid(f"The Idempotency-Key header must be 1 to {MAX_KEY_LENGTH} printable ASCII characters.",
                      "Idempotency-Key")
    return value


async def submit_once(state: AppState, dialect: Dialect, client: str, req: ChatRequest, key: str,
                      max_wait: float | None, priority: Priority, replay: ReplayInfo | None,
                      pinned: str | None = None) -> Ticket:
    dispatcher = state.dispatcher
    queue = state.config.queue
    redis_key = idempotency.key_of(state.config.key_prefix, client, key)
    # The digest covers the parsed request and the dialect, so the same request re-sent with
    # other whitespace or key order is still the same request.
    mine = idempotency.Original(new_job_id(), idempotency.body_digest(dialect.name.encode() + b"\0" +
                                                                      _encoder.encode(req)))
    original = await dispatcher.idempotency.claim(redis_key, mine, queue.idempotency_ttl_seconds)
    if original is not None:
        if original.digest != mine.digest:
            raise GatewayError("invalid_request", "This Idempotency-Key was already used with a different "
                               "request; use a new key for a new request.", status=409, param="Idempotency-Key")
        return dispatcher.follow(_follower(original.job_id, req, client, max_wait, queue.max_wait_seconds))
    model = state.config.model(req.model)
    assert model is not None  # submit() checked it
    try:
        job = await dispatcher.new_job(req, model, client, max_wait, priority, pinned, job_id=mine.job_id)
        job.idempotency_key = redis_key
        job.record_ttl_seconds = queue.idempotency_ttl_seconds
        return await enqueue(state, job, model, replay)
    except BaseException:
        await dispatcher.idempotency.release(redis_key, mine.job_id)  # it never ran: a retry starts afresh
        raise


def _follower(job_id: str, req: ChatRequest, client: str, max_wait: float | None, default_wait: float) -> Job:
    """The retry's view of the first job: its id (the record to read), this request, and how long
    this client waits for a first event."""
    now_ms = int(time.time() * 1000)
    wait = default_wait if max_wait is None else max_wait
    return Job(id=job_id, account="", upstream_model="", request=req, reply_to="", enqueued_ms=now_ms,
               deadline_ms=now_ms + int(wait * 1000), input_estimate=0, output_reserve=0, client=client)
