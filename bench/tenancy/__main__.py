"""`python -m bench.tenancy [--requests N]`: see bench/tenancy/__init__.py."""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid

import redis.asyncio as aioredis

from api.tenancy import Tenancy
from shared.config import parse_config
from shared.jobs import Job
from shared.model import ChatRequest, Message, Text
from shared.redis.embedded import EmbeddedRedis
from shared.redis.keys import Keys


def _job() -> Job:
    req = ChatRequest(model="m", messages=[Message("user", [Text("hi")])])
    return Job(uuid.uuid4().hex, "acct", "x", req, "", 0, 60_000, 10, 20, client="bench")


async def _measure(url: str, requests: int) -> dict[str, float]:
    config = parse_config(f"""
key_prefix: b{uuid.uuid4().hex[:8]}
accounts: [{{name: acct, provider: mock, base_url: "http://127.0.0.1:9/v1"}}]
models: [{{name: m, route: [{{account: acct, model: x}}], price: {{input: 1, output: 2}}}}]
tenants: [{{name: bench, rpm: 100000000, tpm: 1000000000, concurrency: 1000,
            budget: {{period: day, tokens: 1000000000000, cost: 1000000}}}}]
""", env={})
    client = aioredis.Redis.from_url(url)
    tenancy = Tenancy(config, client, Keys(config.key_prefix))
    model = config.models[0]
    await tenancy.settle(await tenancy.admit(_job(), model), None, known=True)  # type: ignore[arg-type]
    admit, settle = [], []
    for _ in range(requests):
        t0 = time.perf_counter()
        hold = await tenancy.admit(_job(), model)
        t1 = time.perf_counter()
        assert hold is not None
        await tenancy.settle(hold)  # reads the (absent) record, finds no job: a refund
        settle.append(time.perf_counter() - t1)
        admit.append(t1 - t0)
    for _ in range(2):  # the first burst also opens the pool's connections; the second is measured
        started = time.perf_counter()
        holds = await asyncio.gather(*(tenancy.admit(_job(), model) for _ in range(100)))
        burst = time.perf_counter() - started
        await asyncio.gather(*(tenancy.settle(h, None, known=True) for h in holds if h is not None))
    await client.aclose()
    return {"admit_p50_ms": statistics.median(admit) * 1000,
            "admit_p99_ms": statistics.quantiles(admit, n=100)[98] * 1000,
            "settle_p50_ms": statistics.median(settle) * 1000, "burst_100_ms": burst * 1000}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.tenancy")
    parser.add_argument("--requests", type=int, default=2000)
    args = parser.parse_args()
    server = EmbeddedRedis()
    try:
        figures = asyncio.run(_measure(server.url, args.requests))
    finally:
        server.stop()
    print("| admission, p50 | admission, p99 | settling (background), p50 | 100 admissions at once |")
    print("|---|---|---|---|")
    print(f"| {figures['admit_p50_ms']:.3f} ms | {figures['admit_p99_ms']:.3f} ms | "
          f"{figures['settle_p50_ms']:.3f} ms | {figures['burst_100_ms']:.1f} ms |")


main()
