"""One scenario's Sluice system: mock upstream(s), workers and one API, sharing the run's Redis.

A thin layer over `shared.system.System` with what the scenarios read back: mock counters,
`sluice status`, the limiter hash, and the workers' (DEBUG) log records.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import httpx
import orjson
import redis.asyncio as aioredis

from bench.limits.load import CLIENT_KEY, MODEL, UPSTREAM_MODEL
from bench.limits.measure import percentile
from bench.limits.result import Ctx
from shared.mock.settings import MockSettings
from shared.redis.keys import Keys
from shared.status import collect
from shared.system import MockOptions, System, SystemOptions


@dataclass(slots=True)
class AccountSpec:
    name: str
    mock: str  # the mock process that plays this account's provider
    limits: dict[str, Any]


@dataclass(slots=True)
class SystemSpec:
    mocks: dict[str, MockSettings]  # mock name -> its settings
    accounts: list[AccountSpec]
    replicas: int = 1  # worker processes per account
    queue: dict[str, Any] = field(default_factory=dict)


class Cluster:
    """The scenario's `System` (prefix of its own; logs and config under log_dir/<name>/)."""

    def __init__(self, name: str, spec: SystemSpec, redis_url: str, log_dir: Path) -> None:
        self.name = name
        self.spec = spec
        mocks = {mock: MockOptions(mock, settings=settings) for mock, settings in spec.mocks.items()}
        self.prefix = f"bl{uuid.uuid4().hex[:8]}"
        self.system = System(SystemOptions(
            config={
                "redis_url": redis_url,
                "key_prefix": self.prefix,
                "client_keys": [{"name": "bench", "key": CLIENT_KEY}],
                "accounts": [{"name": a.name, "provider": "mock", "base_url": f"{mocks[a.mock].url}/v1",
                              "limits": a.limits} for a in spec.accounts],
                "models": [{"name": MODEL, "route": [{"account": a.name, "model": UPSTREAM_MODEL}
                                                     for a in spec.accounts]}],
                "queue": spec.queue,
            },
            embedded_redis="never", mocks=list(mocks.values()), workers_per_account=spec.replicas,
            log_dir=log_dir / name, log_level="WARNING", worker_log_level="DEBUG", ready_timeout=45))
        self.config = self.system.config
        self.base_url = self.system.base_url

    def mock_url(self, mock: str) -> str:
        return self.system.mock_url(mock)

    def start(self) -> None:
        self.system.start()

    def stop(self) -> None:
        self.system.stop()

    def alive(self) -> list[str]:
        return self.system.alive()

    @property
    def worker_logs(self) -> dict[str, list[Path]]:
        return {a.name: [c.log_path for c in self.system.workers(a.name) if c.log_path is not None]
                for a in self.spec.accounts}

    async def mock_stats(self, http: httpx.AsyncClient, mock: str) -> dict[str, Any]:
        reply = await http.get(f"{self.mock_url(mock)}/_stats", timeout=10)
        reply.raise_for_status()
        return dict(reply.json())

    async def status(self) -> dict[str, Any]:
        """What `sluice status --config F --json` prints, as a dict."""
        return dict(await collect(self.config))

    async def limiter_state(self, account: str) -> dict[str, float]:
        """The account's limiter hash (tat_*, blocked, and whatever else the worker keeps there)."""
        client = aioredis.Redis.from_url(self.system.redis_url)
        try:
            pending = client.hgetall(Keys(self.config.key_prefix).account(account).rl)
            raw = await cast("Awaitable[dict[bytes, bytes]]", pending)  # redis-py types it as a union
        finally:
            await client.aclose()
        return {k.decode(): float(v) for k, v in raw.items()}

    def worker_log_records(self, account: str, message_contains: str) -> list[dict[str, Any]]:
        records = []
        for path in self.worker_logs.get(account, []):
            for line in path.read_bytes().splitlines():
                if not line.startswith(b"{"):
                    continue
                try:
                    record = orjson.loads(line)
                except orjson.JSONDecodeError:
                    continue
                if isinstance(record, dict) and message_contains in str(record.get("msg", "")):
                    records.append(record)
        return records


@contextlib.asynccontextmanager
async def running(ctx: Ctx, name: str, spec: SystemSpec) -> AsyncIterator[Cluster]:
    cluster = Cluster(name, spec, ctx.redis_url, ctx.log_dir)
    try:
        await asyncio.to_thread(cluster.start)
        yield cluster
    finally:
        await asyncio.to_thread(cluster.stop)


def block_summary(cluster: Cluster, account: str) -> tuple[int, str]:
    records = cluster.worker_log_records(account, "upstream 429")
    blocks = [float(r.get("block_s", 0.0)) for r in records]
    if not blocks:
        return 0, "none"
    return len(blocks), (f"{len(blocks)} (block min {min(blocks):.2f} s, "
                         f"median {percentile(blocks, 0.5):.2f} s, max {max(blocks):.2f} s)")


def jobs_per_worker(cluster: Cluster, account: str) -> list[int]:
    counts = []
    for path in cluster.worker_logs.get(account, []):
        counts.append(sum(1 for line in path.read_bytes().splitlines() if b'"msg":"job done"' in line))
    return counts
