"""Bursts wait in the queue; past a deadline or a cap the client gets a 429 in its own protocol,
with a Retry-After from the queue's drain rate. One account at 2 rpm: one job every 30 s."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import CLIENT_KEY, SluiceSystem, wait_until

MESSAGES: Any = [{"role": "user", "content": "hello"}]
HEADERS = {"authorization": f"Bearer {CLIENT_KEY}"}


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[SluiceSystem]:
    accounts = [{"name": "slow", "limits": {"rpm": 2, "concurrency": 4}}]
    models = [{"name": "m", "route": [{"account": "slow", "model": "x"}]}]
    running = SluiceSystem(tmp_path_factory.mktemp("bp"), redis_url, accounts=accounts, models=models,
                           queue={"keepalive_seconds": 0.3, "max_depth": 1})
    # take the account's one slot for the next 30 s
    reply = httpx.post(f"{running.base_url}/v1/chat/completions", json={"model": "m", "messages": MESSAGES},
                       headers=HEADERS, timeout=30)
    assert reply.status_code == 200
    yield running
    running.close()


def ready_depth(system: SluiceSystem) -> int:
    return int(system.redis.zcard(f"{system.prefix}:{{slow}}:ready"))


def test_past_the_deadline_a_sync_request_gets_429_with_retry_after(system: SluiceSystem) -> None:
    api = openai.OpenAI(base_url=f"{system.base_url}/v1", api_key=CLIENT_KEY, max_retries=0)
    with pytest.raises(openai.RateLimitError) as info:
        api.chat.completions.create(model="m", messages=MESSAGES, extra_headers={"x-sluice-max-wait": "0.5"})
    assert int(info.value.response.headers["retry-after"]) >= 1
    assert "wait deadline" in info.value.message
    assert ready_depth(system) == 0  # the job left the queue with its client


def test_past_the_deadline_a_waiting_stream_gets_keepalives_then_an_error(system: SluiceSystem) -> None:
    body = {"model": "m", "messages": MESSAGES, "stream": True}
    with httpx.stream("POST", f"{system.base_url}/v1/chat/completions", json=body,
                      headers={**HEADERS, "x-sluice-max-wait": "1.5"}, timeout=30) as reply:
        assert reply.status_code == 200  # committed after the first keep-alive interval
        raw = b"".join(reply.iter_raw())
    assert b": keep-alive" in raw
    data = [line[6:] for line in raw.decode().splitlines() if line.startswith("data: ")]
    assert json.loads(data[0])["error"]["code"] == "rate_limit_exceeded" and data[-1] == "[DONE]"
    assert ready_depth(system) == 0


def test_over_the_queue_cap_is_an_immediate_429(system: SluiceSystem) -> None:
    import concurrent.futures

    api = openai.OpenAI(base_url=f"{system.base_url}/v1", api_key=CLIENT_KEY, max_retries=0)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(api.chat.completions.create, model="m", messages=MESSAGES,
                              extra_headers={"x-sluice-max-wait": "3"})
        wait_until(lambda: ready_depth(system) == 1, what="the first request to be queued")
        with pytest.raises(openai.RateLimitError) as info:
            api.chat.completions.create(model="m", messages=MESSAGES)
        assert "queue is full" in info.value.message
        with pytest.raises(openai.RateLimitError):  # and the queued one still times out cleanly
            waiting.result(timeout=30)


def test_a_client_that_hangs_up_takes_its_job_out_of_the_queue(system: SluiceSystem) -> None:
    before = int(system.redis.hget(f"{system.prefix}:{{slow}}:stats", "cancelled") or 0)
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{system.base_url}/v1/chat/completions", json={"model": "m", "messages": MESSAGES},
                   headers=HEADERS, timeout=httpx.Timeout(5, read=0.5))
    wait_until(lambda: int(system.redis.hget(f"{system.prefix}:{{slow}}:stats", "cancelled") or 0) == before + 1,
               what="the abandoned job to be dropped")
    assert ready_depth(system) == 0
