"""Fallback models: when a model's own accounts fail, the request goes to the next model named in
its `fallbacks` (other models, possibly on other providers), before anything reached the client.

Eligible: provider faults the worker already retried (5xx, timeouts, dropped or broken streams),
a refused key, and a wait that ran out with the job still queued. Not eligible: errors about the
request itself (a 4xx from the provider, invalid input), and Idempotency-Key requests (their
key names one job; a fallback would be a second). The fallback job keeps the client's model name
(answers are rendered as the model the client asked for), its priority and its wait.
"""

from __future__ import annotations

import logging

from api.dialects import Dialect
from api.enqueue import enqueue, replay_info
from api.state import AppState
from api.ticket import Ticket
from shared.errors import GatewayError

log = logging.getLogger("sluice.api")

FALLBACK_KINDS = frozenset({"upstream_unavailable", "upstream_timeout", "upstream_auth", "rate_limited"})


class Fallbacks:
    """The ticket a request is currently answered from, and the models left to fall back to."""

    def __init__(self, state: AppState, dialect: Dialect, ticket: Ticket) -> None:
        self.state = state
        self.dialect = dialect
        self.ticket = ticket
        model = state.config.model(ticket.job.request.model)
        self._left = list(model.fallbacks) if model is not None and not ticket.follows else []

    async def next(self, err: GatewayError) -> Ticket | None:
        """After `err` ended the current ticket (already released): the next fallback's ticket,
        which becomes the current one, or None (the error is the answer)."""
        job = self.ticket.job
        if err.kind not in FALLBACK_KINDS or job.idempotency_key or not self._left:
            return None
        name = self._left.pop(0)
        model = self.state.config.model(name)
        tenancy = self.state.tenancy
        if model is None or (tenancy is not None and not tenancy.allows(job.client, name)):
            return await self.next(err)  # a model this client may not use is no fallback for it
        req = job.request
        wait = max(0.0, (job.deadline_ms - job.enqueued_ms) / 1000)
        new = await self.state.dispatcher.new_job(req, model, job.client, wait, job.priority)
        replay = replay_info(self.dialect, job.client, req)
        log.info("model failed; falling back", extra={"request_id": job.id, "fallback": model.name,
                                                      "fallback_request_id": new.id, "kind": err.kind})
        self.ticket = await enqueue(self.state, new, model, replay)
        return self.ticket
