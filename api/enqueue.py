"""The one way a routed live job enters the queue: under its tenant's limits when it has any.

Every live path comes through `enqueue`: chat, Responses, Ollama, each part of an embedding
request, the first request of an Idempotency-Key, and a fallback to another model. The tenant's
reservation (api/tenancy.py) is taken first, settled when the ticket is released, and refunded
at once when the job never makes it into the queue.
"""

from __future__ import annotations

from api.dialects import Dialect
from api.state import AppState
from api.tenancy import Tenancy
from api.ticket import Ticket
from shared.config import Model
from shared.jobs import Job
from shared.model import ChatRequest
from shared.redis.record import ReplayInfo


async def enqueue(state: AppState, job: Job, model: Model, replay: ReplayInfo | None = None) -> Ticket:
    """Queues a routed job; the ticket reads its answer back."""
    if state.tenancy is None:
        return await state.dispatcher.submit(job, replay)
    return await _submit_held(state, state.tenancy, job, model, replay)


def replay_info(dialect: Dialect, client: str, req: ChatRequest) -> ReplayInfo | None:
    """What a stream's record needs so that another API process can resume it."""
    return ReplayInfo(dialect.name, req.model, client, req.include_usage) if req.stream else None


async def _submit_held(state: AppState, tenancy: Tenancy, job: Job, model: Model, replay: ReplayInfo | None) -> Ticket:
    try:
        hold = await tenancy.admit(job, model)
    except BaseException:
        state.dispatcher.routed(job.account)
        raise
    if hold is None:
        return await state.dispatcher.submit(job, replay)
    try:
        ticket = await state.dispatcher.submit(job, replay)
    except BaseException:
        await tenancy.settle(hold, None, known=True)
        raise
    ticket.on_release = lambda: tenancy.settle_soon(hold)
    return ticket
