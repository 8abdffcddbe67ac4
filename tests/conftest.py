"""Shared fixtures: a private redis-server for the session, and whole running systems.

Integration tests never touch the machine's own Redis: the session starts a redis-server on a
free loopback port and every system gets its own key prefix, deleted afterwards.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import uvicorn

from shared.cli import build_parser, mock_settings
from shared.mock import create_app
from shared.mock.settings import MockSettings
from shared.redis.client import connect_sync
from shared.redis.embedded import EmbeddedRedis
from shared.system import MockOptions, System, SystemOptions

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
    """A `System` for one test: one mock provider, one worker process per account replica, one API
    process (and `batchers` batch coordinators), on the session's Redis under a key prefix of its
    own (deleted by `close()`)."""

    def __init__(self, tmp: Path, redis_url: str, accounts: list[dict[str, Any]], models: list[dict[str, Any]],
                 queue: dict[str, Any] | None = None, mock: MockSettings | None = None,
                 replicas: int = 1, base_url_placeholder: str | None = None,
                 mock_args: list[str] | None = None, batchers: int = 0,
                 batches: dict[str, Any] | None = None, extra: dict[str, Any] | None = None) -> None:
        self.prefix = f"t{uuid.uuid4().hex[:10]}"
        if mock_args:  # `sluice mock-upstream` flags, read by the command's own parser
            mock = mock_settings(build_parser().parse_args(["mock-upstream", *mock_args]))
        self.redis_url = redis_url
        upstream = MockOptions("mock", settings=mock)
        self.mock_url = upstream.url
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
            **(extra or {}),  # more top-level config (tenants, client keys, limits)
        }
        self.system = System(SystemOptions(config=config, embedded_redis="never", mocks=[upstream],
                                           workers_per_account=replicas, batchers=batchers, log_dir=tmp / self.prefix,
                                           log_level="WARNING", ready_timeout=30))
        self.system.start()
        self.base_url = self.system.base_url
        self.redis = connect_sync(redis_url)  # a Cluster or Sentinel URL too (tests/cluster)

    @property
    def config_path(self) -> Path:
        assert self.system.config_path is not None
        return self.system.config_path

    @property
    def env(self) -> dict[str, str]:
        return self.system.env

    @property
    def workers(self) -> dict[str, list[subprocess.Popen[bytes]]]:
        return {a.name: [c.process for c in self.system.workers(a.name)] for a in self.system.config.accounts}

    def start_worker(self, account: str) -> subprocess.Popen[bytes]:
        return self.system.start_worker(account).process

    @property
    def api(self) -> subprocess.Popen[bytes]:
        """The API process started last."""
        return self.system.of_role("api")[-1].process

    @property
    def batchers(self) -> list[subprocess.Popen[bytes]]:
        return [c.process for c in self.system.of_role("batcher")]

    def start_batcher(self) -> subprocess.Popen[bytes]:
        return self.system.start_batcher().process

    def start_api(self) -> None:
        """Starts the API again (on its port) after it was killed, and waits until it is ready."""
        self.system.restart_api()

    def mock_stats(self) -> dict[str, Any]:
        return dict(httpx.get(f"{self.mock_url}/_stats", timeout=5).json())

    def mock_config(self, **settings: Any) -> None:
        httpx.post(f"{self.mock_url}/_config", json=settings, timeout=5).raise_for_status()

    def counter(self, account: str, name: str) -> int:
        value = self.redis.hget(f"{self.prefix}:{{{account}}}:stats", name)
        return int(value or 0)

    def close(self) -> None:
        self.system.stop()
        try:
            keys = list(self.redis.scan_iter(match=f"{self.prefix}:*", count=1000))
            if keys:
                self.redis.delete(*keys)
        except redis.RedisError:
            pass  # a test that stopped its own Redis has nothing left to clean
        self.redis.close()


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


MOCK_PLACEHOLDER = "http://MOCK"  # SluiceSystem puts the mock's URL here
# Where each upstream dialect of the one mock listens, below its URL.
MOCK_FACES = {"openai": "/v1", "anthropic": "", "gemini": "", "mistral": "/mistral/v1", "deepseek": "/deepseek/v1"}


def upstream_matrix(tmp: Path, redis_url: str, upstreams: list[str],
                    extra: dict[str, Any] | None = None) -> SluiceSystem:
    """A system with one account per upstream dialect of the mock (`up-<name>`) and one model routed to
    each (`via-<name>`), for the suites that run every client protocol against every upstream."""
    accounts = [{"name": f"up-{u}", "provider": u, "api_key": "mock-key", "base_url": MOCK_PLACEHOLDER + MOCK_FACES[u]}
                for u in upstreams]
    models = [{"name": f"via-{u}", "route": [{"account": f"up-{u}", "model": "mock-model"}]} for u in upstreams]
    return SluiceSystem(tmp, redis_url, accounts=accounts, models=models, base_url_placeholder=MOCK_PLACEHOLDER,
                        extra=extra)


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


@contextlib.contextmanager
def serve_mock(settings: MockSettings) -> Iterator[str]:
    """The mock provider on a real uvicorn server on 127.0.0.1, in a thread; yields its base URL."""
    # Bind before the thread starts: connections queue in the backlog until uvicorn accepts them,
    # so no readiness polling is needed.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        create_app(settings), http="httptools", log_level="warning", access_log=False, lifespan="on"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


@pytest.fixture
def live_mock() -> Callable[[MockSettings], contextlib.AbstractContextManager[str]]:
    """`with live_mock(MockSettings(...)) as base_url:` the mock provider on a real server on
    127.0.0.1 (the mock's own tests, and worker tests that need a real upstream)."""
    return serve_mock
