"""Running one embedding request through the queue: the executor every entry point calls.

`embed(state, client, request)` checks the model, splits the inputs into parts no longer than
every upstream of the model takes in one call, queues each part as its own job (each reserves
its input estimate in the account's buckets, is routed on its own, and is reconciled with the
upstream's usage when it is acknowledged), waits for all of them and joins the vectors in input
order. The HTTP routes (api/routes/embeddings.py) call it, and so can a batch runner: parse a
`/v1/embeddings` line with `openai_embeddings.parse_request`, call `embed(..., priority="batch")`
and render with `openai_embeddings.render_response`.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import msgspec

from api.dispatch import Ticket
from api.relay import AppState
from shared.config import Model
from shared.embeddings import (
    TOKEN_ARRAY_PROVIDERS,
    UPSTREAM_MAX_INPUTS,
    EmbeddingComplete,
    EmbeddingRequest,
    EmbeddingResponse,
    Input,
    Vector,
    decode_embedding_events,
    estimate_tokens,
    split,
)
from shared.errors import GatewayError, invalid
from shared.jobs import Job, Priority
from shared.model import ChatRequest, StreamError, Timing, Usage


@dataclass(slots=True)
class Embedded:
    response: EmbeddingResponse  # vectors in the form the upstreams sent them
    job_ids: list[str]  # one per upstream call, in input order
    timing: Timing | None  # the slowest part's


def embedding_model(state: AppState, name: str) -> Model:
    model = state.config.model(name)
    if model is None or model.kind != "embedding":
        raise GatewayError("not_found", f"The model '{name}' does not exist or is not an embedding model.",
                           param="model")
    return model


def part_size(state: AppState, model: Model) -> int:
    """The most inputs every account the model routes to takes in one call."""
    sizes = []
    for target in model.route:
        account = state.config.account(target.account)
        sizes.append(account.max_embedding_inputs or UPSTREAM_MAX_INPUTS.get(account.provider, 2048))
    return min(sizes)


def _check_inputs(state: AppState, model: Model, inputs: list[Input], field: str) -> None:
    if not any(isinstance(item, list) for item in inputs):
        return
    for target in model.route:
        provider = state.config.account(target.account).provider
        if provider not in TOKEN_ARRAY_PROVIDERS:
            raise invalid(f"The model '{model.name}' is served by a {provider} upstream, which embeds text only: "
                          f"send strings, not token arrays.", field)


async def embed(state: AppState, client: str, req: EmbeddingRequest, *, priority: Priority = "interactive",
                max_wait: float | None = None, input_field: str = "input") -> Embedded:
    model = embedding_model(state, req.model)
    _check_inputs(state, model, req.inputs, input_field)
    parts = split(req.inputs, part_size(state, model))
    submitted = await asyncio.gather(*(_submit(state, client, model, req, part, priority, max_wait)
                                       for part in parts), return_exceptions=True)
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
    vectors: list[Vector] = []
    tokens = 0
    for answer in answers:
        vectors.extend(answer.response.vectors)
        tokens += answer.response.input_tokens
    timings = [a.timing for a in answers if a.timing is not None]
    slowest = max(timings, key=lambda t: t.upstream_ms) if timings else None
    known = all(a.response.usage_known for a in answers)
    return Embedded(EmbeddingResponse(req.model, vectors, tokens, known), [t.job.id for t in tickets], slowest)


async def _submit(state: AppState, client: str, model: Model, req: EmbeddingRequest, part: list[Input],
                  priority: Priority, max_wait: float | None) -> Ticket:
    dispatcher = state.dispatcher
    job: Job = dispatcher.new_job(ChatRequest(model=req.model, messages=[]), model, "", "", client, max_wait,
                                  priority)
    job.embedding = msgspec.structs.replace(req, inputs=part)
    job.input_estimate = estimate_tokens(part)
    job.output_reserve = 0  # an embedding generates nothing
    job.account, job.upstream_model = await dispatcher.choose_route(model, job.input_estimate)
    return await dispatcher.submit(job)


async def _answer(state: AppState, ticket: Ticket) -> EmbeddingComplete:
    async for item in ticket.entries(state.config.queue.keepalive_seconds):
        if item is None:
            continue
        for event in decode_embedding_events(item[1]):
            if isinstance(event, EmbeddingComplete):
                return event
            if isinstance(event, StreamError):
                raise GatewayError.from_info(event.error)
    raise GatewayError("internal", "the answer ended without a result")


async def _withdraw(state: AppState, tickets: list[Ticket]) -> None:
    """A part failed or the request was abandoned: parts still queued leave the queue unspent."""
    dispatcher = state.dispatcher
    for ticket in tickets:
        await dispatcher.scripts.cancel(dispatcher.keys.account(ticket.job.account), ticket.job.id)


def account_result(state: AppState, client: str, dialect: str, done: Embedded, started: float) -> dict[str, str]:
    """Counts the request in the metrics and returns its response headers."""
    total = (time.monotonic() - started) * 1000
    overhead = total - (done.timing.upstream_ms if done.timing is not None else 0.0)
    metrics = state.metrics
    metrics.request(client, done.response.model, dialect, 200)
    metrics.usage(client, Usage(input_tokens=done.response.input_tokens))
    if done.timing is not None:
        metrics.timing(done.response.model, done.timing, overhead)
    return {"x-sluice-request-id": done.job_ids[0], "x-sluice-upstream-calls": str(len(done.job_ids)),
            "x-sluice-overhead-ms": f"{max(0.0, overhead):.2f}"}
