"""Running one embedding request through the queue: the executor every entry point calls.

`embed(state, client, request)` is the live path: `plan` checks the model and cuts the inputs
into parts no longer than every upstream of the model takes in one call; each part becomes a job
of its own (`part_job`: it reserves its input estimate in the account's buckets, is routed on
its own, and is reconciled with the upstream's usage when acknowledged); `embed` waits for all
of them and `join`s the vectors in input order. The HTTP routes (api/routes/embeddings.py) call
`embed`. The batch coordinator (worker/batcher/) enqueues and collects parts itself, with the
same pieces: `plan` (shared/embedding_parts.py), `Dispatcher.job_for` per part, `join`, then
`openai_embeddings.render_response`.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from api.dispatch import Dispatcher
from api.enqueue import enqueue
from api.state import AppState
from api.ticket import Ticket
from api.timing import timing_headers
from shared.config import Model
from shared.embedding_parts import plan
from shared.embeddings import EmbeddingComplete, EmbeddingRequest, EmbeddingResponse, Vector, decode_embedding_events
from shared.errors import GatewayError
from shared.jobs import Job, Priority
from shared.model import StreamError, Timing, Usage


@dataclass(slots=True)
class Embedded:
    response: EmbeddingResponse  # vectors in the form the upstreams sent them
    job_ids: list[str]  # one per upstream call, in input order
    timing: Timing | None  # the slowest part's


async def part_job(dispatcher: Dispatcher, model: Model, part: EmbeddingRequest, client: str,
                   max_wait: float | None, priority: Priority) -> Job:
    """The job for one part, routed to the account that can start it soonest (enqueue it with
    `dispatcher.submit`). It reserves the part's input estimate and no output."""
    return await dispatcher.new_job(part, model, client, max_wait, priority)


def answer_of(payload: bytes) -> EmbeddingComplete | None:
    """A part's answer from one of its record entries (None: not in this entry); a failed part
    raises its error."""
    for event in decode_embedding_events(payload):
        if isinstance(event, EmbeddingComplete):
            return event
        if isinstance(event, StreamError):
            raise GatewayError.from_info(event.error)
    return None


def join(model: str, answers: list[EmbeddingComplete]) -> EmbeddingResponse:
    """The parts' answers as one, vectors in input order (`model` is the client's name for it)."""
    vectors: list[Vector] = []
    tokens = 0
    for answer in answers:
        vectors.extend(answer.response.vectors)
        tokens += answer.response.input_tokens
    return EmbeddingResponse(model, vectors, tokens, all(a.response.usage_known for a in answers))


async def embed(state: AppState, client: str, req: EmbeddingRequest, *, priority: Priority = "interactive",
                max_wait: float | None = None, input_field: str = "input") -> Embedded:
    """The live path: every part queued at once, the caller waiting for all of them."""
    model, parts = plan(state.config, req, input_field)
    if state.tenancy is not None and not state.tenancy.allows(client, model.name):  # as if it did not exist
        raise GatewayError("not_found", f"The model '{req.model}' does not exist or is not an embedding model.",
                           param="model")
    submitted = await asyncio.gather(*(_submit(state, client, model, part, priority, max_wait) for part in parts),
                                     return_exceptions=True)
    tickets = [t for t in submitted if isinstance(t, Ticket)]
    waits: list[asyncio.Future[EmbeddingComplete]] = []
    try:
        failure = next((t for t in submitted if isinstance(t, BaseException)), None)
        if failure is not None:
            raise failure
        waits = [asyncio.ensure_future(_answer(state, t)) for t in tickets]
        answers = await asyncio.gather(*waits)
    except BaseException:
        for wait in waits:  # a failed part does not stop its siblings' waits by itself
            wait.cancel()
        await _withdraw(state, tickets)
        raise
    finally:
        for ticket in tickets:
            state.dispatcher.release(ticket)
    timings = [a.timing for a in answers if a.timing is not None]
    slowest = max(timings, key=lambda t: t.upstream_ms) if timings else None
    return Embedded(join(req.model, list(answers)), [t.job.id for t in tickets], slowest)


async def _submit(state: AppState, client: str, model: Model, part: EmbeddingRequest, priority: Priority,
                  max_wait: float | None) -> Ticket:
    job = await part_job(state.dispatcher, model, part, client, max_wait, priority)
    return await enqueue(state, job, model)


async def _answer(state: AppState, ticket: Ticket) -> EmbeddingComplete:
    async for item in ticket.entries(state.config.queue.keepalive_seconds):
        if item is not None and (answer := answer_of(item[1])) is not None:
            return answer
    raise GatewayError("internal", "the answer ended without a result")


async def _withdraw(state: AppState, tickets: list[Ticket]) -> None:
    """A part failed or the request was abandoned: parts still queued leave the queue unspent."""
    dispatcher = state.dispatcher
    for ticket in tickets:
        await dispatcher.scripts.cancel(dispatcher.keys.account(ticket.job.account), ticket.job.id)


def account_result(state: AppState, client: str, dialect: str, done: Embedded, started: float) -> dict[str, str]:
    """Counts the request in the metrics and returns its response headers (the timing ones are
    the slowest part's, as for a chat answer: `x-sluice-overhead-ms`, `server-timing`)."""
    headers, overhead = timing_headers(done.timing, started)
    metrics = state.metrics
    metrics.request(client, done.response.model, dialect, 200)
    metrics.usage(client, Usage(input_tokens=done.response.input_tokens))
    if done.timing is not None:
        metrics.timing(done.response.model, done.timing, overhead)
    headers["x-sluice-request-id"] = done.job_ids[0]
    headers["x-sluice-upstream-calls"] = str(len(done.job_ids))
    return headers
