"""Embedding jobs under the account's limits, end to end: real processes, a real Redis.

- A TPM-bound burst: the account is configured with the provider's real token rate; Sluice paces
  the parts by their input estimate and no upstream 429 happens, where the same burst sent
  straight to the provider is refused in part.
- Upstream 429s (the account's configured limit is far above the provider's): never reach the
  client; the worker blocks the key for the provider's retry-after and re-queues the job.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from typing import Any

import httpx
import openai
import pytest

from shared.mock.embeddings import vector
from tests.conftest import CLIENT_KEY, SluiceSystem, wait_until

TPM = 6000  # 100 tokens a second
TEXT_CHARS = 160  # 40 tokens per request, estimated and counted alike
REQUESTS = 15  # 600 tokens: three times the provider's 200-token bucket


def texts(n: int) -> list[str]:
    return [f"{i:04d}" + "x" * (TEXT_CHARS - 4) for i in range(n)]


def _fire(url: str, key: str, model: str, inputs: list[str], headers: dict[str, str]) -> list[httpx.Response]:
    def one(text: str) -> httpx.Response:
        return httpx.post(f"{url}/embeddings", json={"model": model, "input": text, "encoding_format": "float"},
                          headers={"authorization": f"Bearer {key}", **headers}, timeout=120)

    with concurrent.futures.ThreadPoolExecutor(len(inputs)) as pool:
        return list(pool.map(one, inputs))


async def _fire_at_once(url: str, inputs: list[str]) -> list[int]:
    async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=len(inputs))) as http:
        replies = await asyncio.gather(*(http.post(f"{url}/embeddings", json={"model": "mock-embed", "input": text})
                                         for text in inputs))
    return [r.status_code for r in replies]


@pytest.mark.slow
def test_a_tpm_bound_burst_meets_no_upstream_429(make_system: Any) -> None:
    accounts = [{"name": "acct", "limits": {"tpm": TPM, "concurrency": 32}}]
    models = [{"name": "embed", "kind": "embedding", "route": [{"account": "acct", "model": "mock-embed"}]}]
    system: SluiceSystem = make_system(accounts=accounts, models=models, mock_args=["--tpm", str(TPM)])
    system.mock_config(bucket_seconds=2, embedding_dimensions=8)  # the provider's bucket: 200 tokens
    inputs = texts(REQUESTS)

    replies = _fire(f"{system.base_url}/v1", CLIENT_KEY, "embed", inputs, {"x-sluice-max-wait": "60"})
    assert [r.status_code for r in replies] == [200] * REQUESTS
    assert [r.json()["data"][0]["embedding"] for r in replies] == [vector(t, 8) for t in inputs]
    stats = system.mock_stats()
    assert stats["responses_429"] == 0 and stats["requests"] == REQUESTS
    assert system.counter("acct", "tokens_in:mock-embed") == REQUESTS * TEXT_CHARS // 4  # reconciled usage

    httpx.post(f"{system.mock_url}/_reset").raise_for_status()  # the same burst, straight to the provider
    direct = asyncio.run(_fire_at_once(f"{system.mock_url}/v1", inputs))
    assert direct.count(429) > 0


@pytest.mark.slow
def test_upstream_429s_are_absorbed(make_system: Any) -> None:
    accounts = [{"name": "loose", "limits": {"rpm": 600, "concurrency": 8}}]
    models = [{"name": "embed", "kind": "embedding", "route": [{"account": "loose", "model": "mock-embed"}]}]
    system: SluiceSystem = make_system(accounts=accounts, models=models,
                                       mock_args=["--rpm", "30", "--latency-ms", "100"])
    system.mock_config(bucket_seconds=2)  # the provider really allows a burst of 2, then one per 2 s
    for _ in range(2):  # spend that burst first, so the calls Sluice makes next are refused
        httpx.post(f"{system.mock_url}/v1/embeddings", json={"model": "mock-embed", "input": "drain"},
                   timeout=10).raise_for_status()
    client = openai.OpenAI(base_url=f"{system.base_url}/v1", api_key=CLIENT_KEY, max_retries=0,
                           default_headers={"x-sluice-max-wait": "60"})
    inputs = [f"absorbed {i}" for i in range(5)]
    with concurrent.futures.ThreadPoolExecutor(5) as pool:
        got = list(pool.map(lambda t: client.embeddings.create(model="embed", input=t, encoding_format="float"),
                            inputs))
    assert [r.data[0].embedding for r in got] == [vector(t, 64) for t in inputs]
    assert system.mock_stats()["responses_429"] > 0  # the provider did refuse some calls...
    assert system.counter("loose", "upstream_429") > 0  # ...and the worker re-queued them


def test_a_client_that_hangs_up_takes_its_queued_parts_along(make_system: Any) -> None:
    # One request a minute: after the first call, every part waits in the queue.
    accounts = [{"name": "slow", "max_embedding_inputs": 2, "limits": {"rpm": 1}}]
    models = [{"name": "embed", "kind": "embedding", "route": [{"account": "slow", "model": "mock-embed"}]}]
    system: SluiceSystem = make_system(accounts=accounts, models=models)
    url = f"{system.base_url}/v1/embeddings"
    auth = {"authorization": f"Bearer {CLIENT_KEY}"}
    first = httpx.post(url, json={"model": "embed", "input": "spend the minute"}, headers=auth, timeout=30)
    assert first.status_code == 200
    ready = f"{system.prefix}:{{slow}}:ready"
    with pytest.raises(httpx.ReadTimeout):  # three parts queue behind the limiter; the client gives up
        httpx.post(url, json={"model": "embed", "input": ["a", "b", "c", "d", "e"]}, headers=auth, timeout=1.5)
    wait_until(lambda: system.redis.zcard(ready) == 0, 10, "the abandoned parts to leave the queue")
    assert system.counter("slow", "cancelled") == 3 and system.mock_stats()["requests"] == 1
