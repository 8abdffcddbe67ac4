"""The unit of work that crosses the queue: one normalized request bound for one account."""

from __future__ import annotations

from typing import Literal

import msgspec

from shared.embeddings import EmbeddingRequest
from shared.model import ChatRequest

Priority = Literal["interactive", "batch"]


class Job(msgspec.Struct, omit_defaults=True):
    id: str  # also the request id: names the output stream and appears in every log line
    account: str
    upstream_model: str  # the provider's model name for this account
    request: ChatRequest
    reply_to: str  # the pub/sub channel of the API process waiting for it ("" = none)
    enqueued_ms: int
    deadline_ms: int  # past this the client has given up: do not start it
    input_estimate: int
    output_reserve: int
    priority: Priority = "interactive"
    client: str = ""  # client key name, for per-client metrics
    # Set on an embedding job (worker/embeddings.py runs it); `request` then carries only the model.
    # Why not one typed field, `request: ChatRequest | EmbeddingRequest`: msgspec tells two structs
    # apart in a union only by a tag, and a tagged ChatRequest is refused when its tag is missing,
    # so every job already queued by the previous release (a rolling deploy, a batch feeding
    # through one) would fail to decode in a new worker and be dropped as unreadable. The
    # placeholder keeps one job shape every release reads; it is built in one place
    # (`Dispatcher.job_for`), and the worker branches on `embedding` alone.
    embedding: EmbeddingRequest | None = None
    moves: int = 0  # times it moved to another account while queued (shared/redis/moves.py)
    # With an Idempotency-Key: the Redis key that names this job (shared/redis/idempotency.py),
    # and the record is kept as long as that key, not just `result_ttl_seconds`.
    idempotency_key: str = ""
    record_ttl_seconds: int = 0  # 0: the configured result_ttl_seconds


class Claimed(msgspec.Struct):
    job: Job
    attempt: int  # lease expiries so far: > 0 means an earlier worker died holding it


_job_encoder = msgspec.json.Encoder()
_job_decoder = msgspec.json.Decoder(Job)


def encode_job(job: Job) -> bytes:
    return _job_encoder.encode(job)


def decode_job(payload: bytes) -> Job:
    return _job_decoder.decode(payload)

