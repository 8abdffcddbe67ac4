"""tenant_admit.lua and tenant_settle.lua on a real Redis, through api/tenancy.py: holds,
lapses, refunds and the ledger."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis

from api.tenancy import Ending, Hold, Tenancy, _ending_of
from shared.config import parse_config
from shared.errors import GatewayError
from shared.jobs import Job
from shared.model import ChatRequest, ErrorInfo, Message, MessageStop, StreamError, Text, TextDelta, Usage, UsageEvent
from shared.redis.keys import Keys
from shared.redis.record import encode_events
from shared.tenants.policy import period_id

pytestmark = pytest.mark.anyio


@pytest.fixture
async def tenancy(redis_url: str) -> AsyncIterator[Tenancy]:
    config = parse_config(f"""
key_prefix: t{uuid.uuid4().hex[:8]}
accounts: [{{name: acct, provider: mock, base_url: "http://127.0.0.1:9/v1", timeout_seconds: 0.001}}]
models: [{{name: m, route: [{{account: acct, model: x}}], price: {{input: 1000000, output: 1000000}}}}]
tenants:
  - {{name: one, concurrency: 1}}
  - {{name: budget, budget: {{period: day, tokens: 100, cost: 1000}}}}
""", env={})
    client = aioredis.Redis.from_url(redis_url)
    yield Tenancy(config, client, Keys(config.key_prefix))
    keys = [k async for k in client.scan_iter(match=f"{config.key_prefix}:*")]
    if keys:
        await client.delete(*keys)
    await client.aclose()


def job(tenant: str, tokens: int = 10, wait_ms: int = 1000) -> Job:
    req = ChatRequest(model="m", messages=[Message("user", [Text("hi")])])
    return Job(uuid.uuid4().hex, "acct", "x", req, "", 0, wait_ms, tokens // 2, tokens - tokens // 2, client=tenant)


async def test_a_hold_is_released_by_settling_and_lapses_if_never_settled(tenancy: Tenancy) -> None:
    model = tenancy.config.models[0]
    hold = await tenancy.admit(job("one"), model)
    assert hold is not None
    with pytest.raises(GatewayError, match="concurrent"):
        await tenancy.admit(job("one"), model)
    await tenancy.settle(hold, Usage(1, 1), known=True)
    assert await tenancy.admit(job("one", wait_ms=0), model) is not None  # its holder "dies" now
    # hold time = wait (0) + account timeout (0) + the margin; move the lapse into the past
    held = tenancy.keys.tenant("one").held
    await tenancy.redis.zadd(held, {m: 1 for m in await tenancy.redis.zrange(held, 0, -1)})
    assert await tenancy.admit(job("one"), model) is not None


async def test_the_ledger_keeps_real_usage_and_refunds_what_was_not_used(tenancy: Tenancy) -> None:
    model = tenancy.config.models[0]
    holds: list[Hold] = []
    for _ in range(10):
        made = await tenancy.admit(job("budget"), model)
        assert made is not None
        holds.append(made)
    with pytest.raises(GatewayError) as spent:
        await tenancy.admit(job("budget"), model)
    assert spent.value.kind == "quota_exceeded" and spent.value.retry_after is not None
    await asyncio.gather(*(tenancy.settle(h, Usage(2, 1), known=True) for h in holds[:5]),  # used 3 of 10
                         *(tenancy.settle(h, None, known=True) for h in holds[5:8]))  # never ran
    usage = await tenancy.usage("budget")
    today = usage["periods"][period_id("day", time.time())]  # type: ignore[index]
    assert today["tokens"] == 5 * 3 + 2 * 10  # two holds still reserve their estimate
    assert today["cost"] == pytest.approx(5 * 3 + 2 * 10)  # priced at 1 per token
    assert usage["in_flight"] == 2
    assert await tenancy.admit(job("budget", tokens=65), model) is not None  # 35 + 65 = the budget exactly
    with pytest.raises(GatewayError):
        await tenancy.admit(job("budget", tokens=1), model)


@pytest.mark.parametrize(("events", "ending", "used"), [
    ([TextDelta(0, "hi")], Ending.RUNNING, None),
    ([UsageEvent(Usage(3, 4)), MessageStop("end_turn")], Ending.USED, 7),
    ([MessageStop("end_turn")], Ending.UNSAID, None),  # no usage said: the reservation stays spent
    ([StreamError(ErrorInfo("upstream_unavailable", "x"))], Ending.FAILED, None),
])
def test_how_a_record_ended_decides_what_is_charged(events: list[Any], ending: Ending, used: int | None) -> None:
    found, usage = _ending_of([(1, encode_events(events))])
    assert found is ending
    assert (usage.input_tokens + usage.output_tokens if usage else None) == used
