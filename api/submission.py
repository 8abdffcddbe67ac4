"""From a parsed request to a queued job: the client's options, the model, the job, the enqueue."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.datastructures import Headers

from api.dialects import Dialect
from api.state import AppState
from api.tenancy import Tenancy
from api.ticket import Ticket
from shared.config import Model
from shared.errors import GatewayError, invalid
from shared.jobs import Job, Priority
from shared.model import ChatRequest
from shared.redis.record import ReplayInfo

MAX_WAIT_LIMIT_SECONDS = 86400


@dataclass(frozen=True, slots=True)
class JobOptions:
    """What a client may ask of the queue, in `x-sluice-*` headers."""

    priority: Priority = "interactive"
    max_wait: float | None = None  # seconds it will wait for a start (None: the configured default)
    account: str | None = None  # x-sluice-account: pin one account of the model

    @classmethod
    def from_headers(cls, headers: Headers) -> JobOptions:
        priority = headers.get("x-sluice-priority", "interactive")
        if priority not in ("interactive", "batch"):
            raise invalid("The x-sluice-priority header must be 'interactive' or 'batch'.", "x-sluice-priority")
        raw = headers.get("x-sluice-max-wait")
        account = headers.get("x-sluice-account")
        if raw is None:
            return cls(priority, account=account)  # type: ignore[arg-type]
        try:
            max_wait = float(raw)
        except ValueError:
            raise invalid("The x-sluice-max-wait header must be a number of seconds.", "x-sluice-max-wait") from None
        if not 0 <= max_wait <= MAX_WAIT_LIMIT_SECONDS:
            raise invalid(f"The x-sluice-max-wait header must be between 0 and {MAX_WAIT_LIMIT_SECONDS}.",
                          "x-sluice-max-wait")
        return cls(priority, max_wait, account)  # type: ignore[arg-type]


async def submit(state: AppState, dialect: Dialect, client: str, req: ChatRequest, headers: Headers) -> Ticket:
    """Queues `req` on the account that can start it soonest; the ticket reads its answer back."""
    model = state.config.model(req.model)
    if model is None or model.kind != "chat" or (state.tenancy is not None
                                                 and not state.tenancy.allows(client, req.model)):
        raise GatewayError("not_found", f"The model '{req.model}' does not exist or is not a chat model.",
                           param="model")
    options = JobOptions.from_headers(headers)
    job = await state.dispatcher.new_job(req, model, client, options.max_wait, options.priority, options.account)
    replay = ReplayInfo(dialect.name, req.model, client, req.include_usage) if req.stream else None
    return await enqueue(state, job, model, replay)


async def enqueue(state: AppState, job: Job, model: Model, replay: ReplayInfo | None = None) -> Ticket:
    """Queues a routed job, under its tenant's limits when it has any (every live path comes
    through here: chat, Responses, Ollama, each part of an embedding request)."""
    if state.tenancy is None:
        return await state.dispatcher.submit(job, replay)
    return await _submit_held(state, state.tenancy, job, model, replay)


async def _submit_held(state: AppState, tenancy: Tenancy, job: Job, model: Model, replay: ReplayInfo | None) -> Ticket:
    """Submits under the tenant's limits: reserved first, settled when the ticket is released,
    refunded at once when the job never makes it into the queue."""
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
