"""Shared fixtures: a private redis-server for the session, and whole running systems.

Integration tests never touch the machine's own Redis: the session starts a redis-server on a
free loopback port and every system gets its own key prefix, deleted afterwards.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import yaml

from shared.redis.embedded import EmbeddedRedis, free_port

ROOT = Path(__file__).resolve().parent.parent
CLIENT_KEY = "sk-test-client"
OTHER_CLIENT_KEY = "sk-test-other"  # a second client, for what must stay private to its owner


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    server = EmbeddedRedis()
    yield server.url
    server.stop()


def wait_until(predicate: Any, timeout: float = 20.0, what: str = "condition") -> None:
    """Polls a condition that another process will make true; fails loudly on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


class SluiceSystem:
    """Mock upstream + one worker process per account replica + one API process."""

    def __init__(self, tmp: Path, redis_url: str, accounts: list[dict[str, Any]], models: list[dict[str, Any]],
                 queue: dict[str, Any] | None = None, mock_args: list[str] | None = None,
                 replicas: int = 1, base_url_placeholder: str | None = None, batchers: int = 0,
                 batches: dict[str, Any] | None = None) -> None:
        self.prefix = f"t{uuid.uuid4().hex[:10]}"
        self.redis_url = redis_url
        self.mock_port = free_port()
        self.api_port = free_port()
        self.mock_url = f"http://127.0.0.1:{self.mock_port}"
        self.base_url = f"http://127.0.0.1:{self.api_port}"
        for account in accounts:
            account.setdefault("provider", "mock")
            account.setdefault("base_url", f"{self.mock_url}/v1")
            if base_url_placeholder:
                account["base_url"] = account["base_url"].replace(base_url_placeholder, self.mock_url)
        config = {
            "redis_url": redis_url,
            "key_prefix": self.prefix,
            "client_keys": [{"name": "tester", "key": CLIENT_KEY}, {"name": "other", "key": OTHER_CLIENT_KEY}],
            "accounts": accounts,
            "models": models,
            "queue": queue or {},
            "batches": {"data_dir": str(tmp / f"{self.prefix}-data"), **(batches or {})},
        }
        self.config_path = tmp / f"{self.prefix}.yaml"
        self.config_path.write_text(yaml.safe_dump(config))
        self.accounts = [a["name"] for a in accounts]
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", "SLUICE_LOG_LEVEL": "WARNING"}
        self.log = open(tmp / f"{self.prefix}.log", "ab")  # noqa: SIM115
        self.mock = self._spawn(["mock-upstream", "--port", str(self.mock_port), *(mock_args or [])])
        self.workers: dict[str, list[subprocess.Popen[bytes]]] = {}
        for name in self.accounts:
            for _ in range(replicas):
                self.start_worker(name)
        self.batchers: list[subprocess.Popen[bytes]] = []
        for _ in range(batchers):
            self.start_batcher()
        self.api = self._spawn(["api", "--config", str(self.config_path), "--port", str(self.api_port)])
        wait_until(self._ready, 30, "the system to be ready")
        self.redis = redis.Redis.from_url(redis_url)

    def _spawn(self, args: list[str]) -> subprocess.Popen[bytes]:
        return subprocess.Popen([sys.executable, "-m", "shared.cli", *args], cwd=ROOT, env=self.env,
                                stdout=self.log, stderr=self.log)

    def start_worker(self, account: str) -> subprocess.Popen[bytes]:
        proc = self._spawn(["worker", "--account", account, "--config", str(self.config_path)])
        self.workers.setdefault(account, []).append(proc)
        return proc

    def start_api(self) -> None:
        """(Re)starts the API process on the same port and waits until it is ready."""
        self.api = self._spawn(["api", "--config", str(self.config_path), "--port", str(self.api_port)])
        wait_until(self._ready, 30, "the API to be ready")

    def start_batcher(self) -> subprocess.Popen[bytes]:
        proc = self._spawn(["batcher", "--config", str(self.config_path)])
        self.batchers.append(proc)
        return proc

    def _ready(self) -> bool:
        try:
            if httpx.get(f"{self.mock_url}/_stats", timeout=1).status_code != 200:
                return False
            ready = httpx.get(f"{self.base_url}/readyz", timeout=1)
            return ready.status_code == 200 and all(v > 0 for v in ready.json()["workers"].values())
        except httpx.HTTPError:
            return False

    def mock_stats(self) -> dict[str, Any]:
        return dict(httpx.get(f"{self.mock_url}/_stats", timeout=5).json())

    def mock_config(self, **settings: Any) -> None:
        httpx.post(f"{self.mock_url}/_config", json=settings, timeout=5).raise_for_status()

    def counter(self, account: str, name: str) -> int:
        value = self.redis.hget(f"{self.prefix}:{{{account}}}:stats", name)
        return int(value or 0)

    def close(self) -> None:
        procs = [self.api, self.mock, *self.batchers] + [p for ps in self.workers.values() for p in ps]
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        try:
            keys = list(self.redis.scan_iter(match=f"{self.prefix}:*", count=1000))
            if keys:
                self.redis.delete(*keys)
        except redis.RedisError:
            pass  # a test that stopped its own Redis has nothing left to clean
        self.redis.close()
        self.log.close()


@pytest.fixture
def make_system(tmp_path: Path, redis_url: str) -> Iterator[Any]:
    systems: list[SluiceSystem] = []

    def make(**kwargs: Any) -> SluiceSystem:
        system = SluiceSystem(tmp_path, redis_url, **kwargs)
        systems.append(system)
        return system

    yield make
    for system in systems:
        system.close()


def two_account_model(rpm: int | None = None) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    limits: dict[str, Any] = {"concurrency": 32}
    if rpm:
        limits["rpm"] = rpm
    accounts = [{"name": "acct-a", "limits": dict(limits)}, {"name": "acct-b", "limits": dict(limits)}]
    models = [{"name": "test-model", "route": [{"account": "acct-a", "model": "mock-small"},
                                               {"account": "acct-b", "model": "mock-small"}]}]
    return accounts, models


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
