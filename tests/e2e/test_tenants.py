"""Per-tenant limits through real processes and the official SDKs: budgets that hold under
100 concurrent requests, rpm and concurrency 429s with Retry-After, allowed models, cost
budgets, each in the client's own protocol."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import openai
import orjson
import pytest

from shared.protocols.openai_chat import parse_request
from shared.tenants.policy import period_id
from shared.tokens import estimate_input_tokens
from tests.conftest import SluiceSystem, wait_until

MAX_TOKENS = 16
MESSAGES = [{"role": "user", "content": "Say something short."}]
ESTIMATE = estimate_input_tokens(parse_request(orjson.dumps(
    {"model": "m", "messages": MESSAGES, "max_tokens": MAX_TOKENS}))) + MAX_TOKENS
ROOM_FOR = 10

TENANTS = [
    {"name": "budget", "budget": {"period": "day", "tokens": ROOM_FOR * ESTIMATE}},
    {"name": "rpm", "rpm": 2},
    {"name": "conc", "concurrency": 1},
    {"name": "narrow", "models": ["other"]},
    {"name": "priced", "budget": {"period": "month", "cost": 0.001}},
]
KEYS = {t["name"]: f"sk-tenant-{t['name']}" for t in TENANTS} | {"free": "sk-tenant-free"}


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[SluiceSystem]:
    models = [{"name": "m", "route": [{"account": "acct", "model": "mock-small"}],
               "price": {"input": 10.0, "output": 30.0}},
              {"name": "other", "route": [{"account": "acct", "model": "mock-small"}]}]
    extra = {"client_keys": [{"name": name, "key": key} for name, key in KEYS.items()], "tenants": TENANTS}
    accounts = [{"name": "acct", "limits": {"concurrency": 64}}]
    made = SluiceSystem(tmp_path_factory.mktemp("tenants"), redis_url, accounts, models,
                        mock_args=["--latency-ms", "150"], extra=extra)
    yield made
    made.close()


def _openai(system: SluiceSystem, tenant: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{system.base_url}/v1", api_key=KEYS[tenant], max_retries=0, timeout=60)


def _usage(system: SluiceSystem, tenant: str, field: str, period: str = "day") -> float:
    value = system.redis.hget(f"{system.prefix}:{{tenant:{tenant}}}:usage", f"{period_id(period, time.time())}:{field}")  # type: ignore[arg-type]
    return float(value or 0)


def _held(system: SluiceSystem, tenant: str) -> int:
    return int(system.redis.zcard(f"{system.prefix}:{{tenant:{tenant}}}:held"))


def test_100_concurrent_requests_cannot_overspend_a_budget_with_room_for_10(system: SluiceSystem) -> None:
    async def run() -> list[Any]:
        client = _openai(system, "budget")
        calls = [client.chat.completions.create(model="m", messages=MESSAGES, max_tokens=MAX_TOKENS)  # type: ignore[arg-type]
                 for _ in range(100)]
        try:
            return await asyncio.gather(*calls, return_exceptions=True)
        finally:
            await client.close()

    results = asyncio.run(run())
    answered = [r for r in results if not isinstance(r, BaseException)]
    refused = [r for r in results if isinstance(r, openai.RateLimitError)]
    assert len(answered) + len(refused) == 100, [r for r in results if isinstance(r, BaseException)][:3]
    assert len(answered) >= 1 and refused
    spent = sum(r.usage.total_tokens for r in answered)
    # every admitted request reserved its estimate, so what they used fits the budget (actual
    # usage can exceed an estimate by at most the input estimate's error: one request's worth)
    assert spent <= ROOM_FOR * ESTIMATE + ESTIMATE
    body = refused[0].response.json()
    assert body["error"]["type"] == "insufficient_quota"
    assert refused[0].response.headers["x-should-retry"] == "false"
    assert int(refused[0].response.headers["retry-after"]) >= 1
    # once every hold is settled, the ledger says exactly what was used
    wait_until(lambda: _held(system, "budget") == 0, what="every hold settled")
    assert _usage(system, "budget", "t") == spent


def test_rpm_over_the_limit_is_a_429_with_retry_after(system: SluiceSystem) -> None:
    async def run() -> list[Any]:
        client = _openai(system, "rpm")
        try:
            return [await client.chat.completions.with_raw_response.create(
                model="m", messages=MESSAGES, max_tokens=4) for _ in range(2)] + [  # type: ignore[arg-type]
                await asyncio.gather(client.chat.completions.create(model="m", messages=MESSAGES, max_tokens=4),  # type: ignore[arg-type]
                                     return_exceptions=True)]
        finally:
            await client.close()

    *ok, (third,) = asyncio.run(run())
    assert all(r.status_code == 200 for r in ok)
    assert isinstance(third, openai.RateLimitError)
    assert third.response.json()["error"]["type"] == "rate_limit_error"
    assert 1 <= int(third.response.headers["retry-after"]) <= 30


def test_concurrency_over_the_limit_is_a_429_then_frees_up(system: SluiceSystem) -> None:
    async def run() -> list[Any]:
        client = _openai(system, "conc")
        try:
            return await asyncio.gather(*[client.chat.completions.create(model="m", messages=MESSAGES, max_tokens=4)  # type: ignore[arg-type]
                                          for _ in range(4)], return_exceptions=True)
        finally:
            await client.close()

    results = asyncio.run(run())
    assert sum(not isinstance(r, BaseException) for r in results) >= 1
    assert any(isinstance(r, openai.RateLimitError) and "concurrent" in r.message for r in results)
    wait_until(lambda: _held(system, "conc") == 0, what="the hold released")
    assert asyncio.run(_one(system, "conc")).choices[0].message.content


async def _one(system: SluiceSystem, tenant: str, model: str = "m") -> Any:
    client = _openai(system, tenant)
    try:
        return await client.chat.completions.create(model=model, messages=MESSAGES, max_tokens=4)  # type: ignore[arg-type]
    finally:
        await client.close()


def test_a_model_the_tenant_may_not_use_does_not_exist_for_it(system: SluiceSystem) -> None:
    with pytest.raises(openai.NotFoundError):
        asyncio.run(_one(system, "narrow", "m"))
    assert asyncio.run(_one(system, "narrow", "other")).choices[0].message.content
    assert asyncio.run(_one(system, "free", "m")).choices[0].message.content


def test_a_cost_budget_is_priced_from_the_config_and_refused_in_anthropics_own_terms(system: SluiceSystem) -> None:
    client = anthropic.Anthropic(base_url=system.base_url, api_key=KEYS["priced"], max_retries=0)
    answered = 0
    with pytest.raises(anthropic.APIStatusError) as spent:
        for _ in range(200):  # ~0.0007 per call at the configured prices: the budget runs out fast
            client.messages.create(model="m", max_tokens=MAX_TOKENS, messages=MESSAGES)  # type: ignore[arg-type]
            answered += 1
    assert answered >= 1
    assert spent.value.status_code == 402
    assert spent.value.body["error"]["type"] == "billing_error"  # type: ignore[index]
    wait_until(lambda: _held(system, "priced") == 0, what="holds settled")
    assert 0 < _usage(system, "priced", "c", "month") <= 0.001


def test_gemini_clients_get_resource_exhausted_for_a_spent_budget(system: SluiceSystem) -> None:
    # "budget" was spent by the first test of this module
    url = f"{system.base_url}/v1beta/models/m:generateContent"
    refused = httpx.post(url, headers={"x-goog-api-key": KEYS["budget"]}, timeout=30,
                         json={"contents": [{"role": "user", "parts": [{"text": "hi"}]}]})
    assert refused.status_code == 429
    assert refused.json()["error"]["status"] == "RESOURCE_EXHAUSTED"


def test_the_admin_api_reports_each_tenants_limits_and_usage(system: SluiceSystem, redis_url: str,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from starlette.testclient import TestClient

    from api.app import create_app

    monkeypatch.setenv("SLUICE_ADMIN_TOKEN", "admin-token-for-the-test")
    with TestClient(create_app(system.system.config)) as admin:
        listed = admin.get("/admin/tenants", headers={"authorization": "Bearer admin-token-for-the-test"}).json()
    budget = next(t for t in listed if t["tenant"] == "budget")
    assert budget["limits"]["budget"]["tokens"] == ROOM_FOR * ESTIMATE
    today = budget["periods"][period_id("day", time.time())]
    assert today["tokens"] == _usage(system, "budget", "t") and today["requests"] >= 1
    assert budget["in_flight"] == 0
    assert {t["tenant"] for t in listed} >= set(KEYS)


def test_another_tenant_cannot_see_or_resume_a_stream_and_learns_nothing(system: SluiceSystem) -> None:
    body = {"model": "m", "messages": MESSAGES, "max_tokens": 4, "stream": True}
    owner = {"authorization": f"Bearer {KEYS['free']}"}
    with httpx.stream("POST", f"{system.base_url}/v1/chat/completions", json=body, headers=owner,
                      timeout=30) as started:
        assert started.status_code == 200
        url, job_id = started.headers["x-sluice-stream-url"], started.headers["x-sluice-request-id"]
        first_id = next(line for line in started.iter_lines() if line.startswith("id: "))[4:]
    assert len(job_id) >= 24  # 96 random bits: not guessable
    intruder = {"authorization": f"Bearer {KEYS['narrow']}"}
    theirs = httpx.get(f"{system.base_url}{url}", headers=intruder, timeout=30)
    unknown = httpx.get(f"{system.base_url}/v1/streams/{'0' * len(job_id)}", headers=intruder, timeout=30)
    assert theirs.status_code == unknown.status_code == 404
    assert theirs.content == unknown.content  # the same answer as for an id that never existed
    resumed = httpx.post(f"{system.base_url}/v1/messages", json={},
                         headers={"x-api-key": KEYS["narrow"], "last-event-id": first_id,
                                  "anthropic-version": "2023-06-01"}, timeout=30)
    assert resumed.status_code == 404 and resumed.json()["error"]["type"] == "not_found_error"
    mine = httpx.get(f"{system.base_url}{url}", headers=owner, timeout=30)
    assert mine.status_code == 200 and "data: [DONE]" in mine.text


def test_the_model_list_shows_a_tenant_only_its_models(system: SluiceSystem) -> None:
    async def listed(tenant: str) -> set[str]:
        client = _openai(system, tenant)
        try:
            return {m.id async for m in client.models.list()}
        finally:
            await client.close()

    assert asyncio.run(listed("narrow")) == {"other"}
    assert asyncio.run(listed("free")) == {"m", "other"}
