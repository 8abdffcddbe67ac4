"""From a parsed request to a queued job: the client's options, the model, the job (queued by
api/enqueue.py)."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.datastructures import Headers

from api.dialects import Dialect
from api.enqueue import enqueue, replay_info
from api.idempotency import idempotency_key, submit_once
from api.state import AppState
from api.ticket import Ticket
from shared.errors import GatewayError, invalid
from shared.jobs import Priority
from shared.model import ChatRequest

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
    """Queues `req` on the account that can start it soonest; the ticket reads its answer back.
    With an Idempotency-Key already used by this client, the ticket reads the first request's
    answer instead (api/idempotency.py), and nothing is queued."""
    model = state.config.model(req.model)
    if model is None or model.kind != "chat" or (state.tenancy is not None
                                                 and not state.tenancy.allows(client, req.model)):
        raise GatewayError("not_found", f"The model '{req.model}' does not exist or is not a chat model.",
                           param="model")
    options = JobOptions.from_headers(headers)
    key = idempotency_key(headers)
    if key is not None:
        return await submit_once(state, dialect, client, req, key, options.max_wait, options.priority,
                                 replay_info(dialect, client, req), options.account)
    job = await state.dispatcher.new_job(req, model, client, options.max_wait, options.priority, options.account)
    return await enqueue(state, job, model, replay_info(dialect, client, req))
