"""Embedding jobs in one worker, in-process, on the private Redis and the real mock provider:
one EmbeddingComplete per job, the ack reconciled with the upstream's usage, and re-runs."""

from __future__ import annotations

import secrets
import time
from typing import Any

import pytest

from shared.embeddings import (
    EmbeddingComplete,
    EmbeddingRequest,
    EmbeddingResponse,
    as_floats,
    decode_embedding_events,
)
from shared.jobs import Job
from shared.mock import MockSettings
from shared.mock.embeddings import vector
from shared.model import ChatRequest
from shared.redis import record
from shared.redis.client import Role, connect
from tests.worker.test_worker_loop import (
    Harness,
    Live,
    config_for,
    counted,
    eventually,
    lease_lost,
    running,
    upstream_requests,
)
from worker.embeddings import complete

pytestmark = pytest.mark.anyio
TEXTS = ["a first text to embed", "and a second one"]


def embedding_job(encoding: Any = "base64") -> Job:
    now = int(time.time() * 1000)
    part = EmbeddingRequest("m", list(TEXTS), dimensions=6, encoding_format=encoding)
    return Job(secrets.token_hex(12), "acct", "mock-embed", ChatRequest("m", []), "", now, now + 60_000,
               input_estimate=99, output_reserve=0, embedding=part)


async def answer(h: Harness, job_id: str) -> list[Any]:
    entries = await record.read(h.redis, h.keys.out(job_id))
    return [e for _, payload in entries for e in decode_embedding_events(payload)]


async def test_an_embedding_job_is_one_answer_and_its_ack_counts_the_upstreams_usage(redis_url: str,
                                                                                      live_mock: Live) -> None:
    with live_mock(MockSettings()) as base:
        async with running(config_for(redis_url, base)) as h:
            job = embedding_job()
            await h.enqueue(job)
            events = await eventually(lambda: answer(h, job.id), "the answer")
            stats = await eventually(lambda: counted(h, "completed"), "the ack")
    [done] = events
    assert isinstance(done, EmbeddingComplete) and done.timing is not None and done.timing.upstream_ms > 0
    # asked for base64, the upstream's own bytes are kept; their floats are the mock's vectors
    assert [as_floats(v) for v in done.response.vectors] == [vector(t, 6) for t in TEXTS]
    assert all(isinstance(v, str) for v in done.response.vectors)
    assert stats["tokens_in:mock-embed"] == done.response.input_tokens == 6 + 4  # not the 99 reserved


async def test_a_rerun_of_an_embedding_already_recorded_is_only_acknowledged(redis_url: str,
                                                                             live_mock: Live) -> None:
    with live_mock(MockSettings()) as base:
        config = config_for(redis_url, base)
        client = connect(redis_url, Role.TOOL)
        h = Harness(config, client)
        job = embedding_job()
        await lease_lost(h, job)
        pipe = client.pipeline(transaction=False)  # the dead worker had written the whole answer
        record.append(pipe, h.keys.out(job.id), 1, record.encode_events([complete(
            EmbeddingResponse("mock-embed", [[0.5]], 1), None)]))  # type: ignore[arg-type]
        await pipe.execute()
        await client.aclose()
        async with running(config) as h:
            stats = await eventually(lambda: counted(h, "completed"), "the ack")
            events = await answer(h, job.id)
        assert upstream_requests(base) == 0
    assert stats["reclaimed"] == 1 and len(events) == 1


async def test_a_rerun_with_nothing_recorded_runs_the_call(redis_url: str, live_mock: Live) -> None:
    with live_mock(MockSettings()) as base:
        config = config_for(redis_url, base)
        client = connect(redis_url, Role.TOOL)
        job = embedding_job("float")
        await lease_lost(Harness(config, client), job)
        await client.aclose()
        async with running(config) as h:
            events = await eventually(lambda: answer(h, job.id), "the answer")
        assert upstream_requests(base) == 1
    assert events[0].response.vectors == [vector(t, 6) for t in TEXTS]
