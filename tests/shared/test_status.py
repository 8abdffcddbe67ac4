"""`sluice status` reports what Redis holds for each account, read with the scripts' own rules."""

from __future__ import annotations

import uuid

import orjson
import pytest

from shared.config import Config, QueueSettings, parse_config
from shared.redis.client import Role, connect
from shared.redis.keys import Keys
from shared.redis.scripts import LimitArgs, Scripts
from shared.status import collect, render

pytestmark = pytest.mark.anyio


def config(redis_url: str) -> Config:
    prefix = f"t{uuid.uuid4().hex[:10]}"
    return parse_config(f"""
redis_url: {redis_url}
key_prefix: {prefix}
accounts:
  - {{name: busy, provider: mock, base_url: u, limits: {{rpm: 60, tpm: 60000, concurrency: 4}}}}
  - {{name: idle, provider: mock, base_url: u, limits: {{rpm: 120, concurrency: 2}}}}
models: [{{name: m, route: [{{account: busy, model: x}}]}}]
""", env={})


async def test_a_busy_and_an_idle_account(redis_url: str) -> None:
    cfg = config(redis_url)
    client = connect(redis_url, Role.TOOL)
    scripts = Scripts(client)
    k = Keys(cfg.key_prefix).account("busy")
    try:
        for n in range(3):
            await scripts.enqueue(k, f"i{n}", b"{}", (500, 500), 0, 100)
        await scripts.enqueue(k, "b0", b"{}", (10, 10), 60_000, 100)  # batch: ranked a minute later
        await scripts.learn(k, {"r": 30})  # the provider says 30 rpm, below the configured 60
        claim = await scripts.claim(k, LimitArgs.of(cfg.account("busy")), QueueSettings(), 1)
        assert len(claim.claimed) == 1
        await scripts.block(k, 3_000)
        await scripts.heartbeat(k, 30_000, "w1", [])
        report = await collect(cfg)
    finally:
        keys = [key async for key in client.scan_iter(match=f"{cfg.key_prefix}:*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()

    busy, idle = report["accounts"]
    assert busy["queue"] == {"interactive": 2, "batch": 1}
    assert busy["in_flight"] == 1 and busy["left_now"]["concurrency"] == 3
    assert busy["live_workers"] == 1
    assert 2.9 < busy["blocked_for_s"] <= 3.0
    assert busy["provider_caps"] == {"r": 30}
    # the claim charged one request at the provider's 30 rpm (2 s) and 1,000 tokens at 60,000 tpm (1 s)
    assert 29.0 <= busy["left_now"]["requests"] <= 29.1  # less the time since, refilled
    assert 59_000 <= busy["left_now"]["tokens"] <= 59_100
    assert busy["drain_s"] == 3 * 60 / 30  # three queued, at the rate actually enforced
    assert busy["counters"]["claimed"] == 1

    assert idle["left_now"] == {"requests": 120, "tokens": None, "concurrency": 2}
    assert idle["queue"] == {"interactive": 0, "batch": 0} and idle["blocked_for_s"] == 0
    assert idle["live_workers"] == 0 and idle["drain_s"] == 0

    text = render(report)
    assert "busy (mock): workers=1 in_flight=1/4 queue interactive=2 batch=1" in text
    assert orjson.loads(render(report, as_json=True)) == orjson.loads(orjson.dumps(report))


def test_no_accounts() -> None:
    assert render({"at": 0, "accounts": []}) == "no accounts configured"
