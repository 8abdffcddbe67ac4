"""`sluice worker --health-port`: the probes Kubernetes runs, against real worker processes.

Liveness answers whenever the worker's loop does; readiness follows Redis and the worker's own
heartbeat, and drops to `draining` on SIGTERM while the job in hand finishes.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import yaml

from shared.mock.settings import MockSettings
from shared.redis.embedded import EmbeddedRedis, free_port
from tests.conftest import CLIENT_KEY, ROOT, SluiceSystem, wait_until


def probe(port: int, path: str) -> tuple[int, dict[str, Any]] | None:
    """(status, body) of one probe, or None while nothing listens."""
    try:
        response = httpx.get(f"http://127.0.0.1:{port}{path}", timeout=5)
    except httpx.TransportError:
        return None
    return response.status_code, response.json()


def start_worker(config: Path, redis_url: str, port: int, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "shared.cli", "worker", "--account", "acct-a", "--config",
                             str(config), "--redis-url", redis_url, "--health-port", str(port)],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.kill()
    process.wait(10)
    assert process.stderr is not None
    process.stderr.close()


def test_readiness_follows_redis_and_liveness_does_not(tmp_path: Path) -> None:
    server = EmbeddedRedis()
    config = tmp_path / "sluice.yaml"
    config.write_text(yaml.safe_dump({
        "key_prefix": "health", "queue": {"lease_seconds": 1.5},
        "accounts": [{"name": "acct-a", "provider": "mock", "base_url": "http://127.0.0.1:9/v1"}],
        "models": [{"name": "m", "route": [{"account": "acct-a", "model": "mock-small"}]}],
    }))
    port = free_port()
    worker = start_worker(config, server.url, port)
    try:
        wait_until(lambda: (p := probe(port, "/readyz")) is not None and p[0] == 200, what="the worker ready")
        ready = probe(port, "/readyz")
        assert ready is not None and ready[1]["status"] == "ready" and 0 <= ready[1]["age_ms"] <= 2500
        assert probe(port, "/healthz") == (200, {"status": "ok"})
        assert probe(port, "/nothing") == (404, {"status": "not_found"})

        server.stop()  # Redis gone: not ready, but no reason to restart the worker
        wait_until(lambda: probe(port, "/readyz") == (503, {"status": "unavailable", "redis": False}),
                   what="readiness to drop with Redis")
        assert probe(port, "/healthz") == (200, {"status": "ok"})
        assert worker.poll() is None

        server = EmbeddedRedis(port=server.port)  # back, empty: the next heartbeat makes it ready again
        wait_until(lambda: (p := probe(port, "/readyz")) is not None and p[0] == 200, what="ready again")
    finally:
        stop(worker)
        server.stop()


@pytest.mark.slow
def test_sigterm_drains_with_readiness_down_and_liveness_up(make_system: Any) -> None:
    accounts = [{"name": "acct-a", "limits": {"concurrency": 4}}]
    models = [{"name": "test-model", "route": [{"account": "acct-a", "model": "mock-small"}]}]
    system: SluiceSystem = make_system(accounts=accounts, models=models, mock=MockSettings(latency_ms=4000))
    port = free_port()
    worker = start_worker(system.config_path, system.redis_url, port, env=system.env)
    try:
        wait_until(lambda: (p := probe(port, "/readyz")) is not None and p[0] == 200, what="the probed worker")
        for other in system.workers["acct-a"]:  # only the probed worker may take the job
            other.send_signal(signal.SIGTERM)
            other.wait(30)
        answers: list[str] = []
        client = openai.OpenAI(base_url=f"{system.base_url}/v1", api_key=CLIENT_KEY, max_retries=0, timeout=60)

        def ask() -> None:
            reply = client.chat.completions.create(model="test-model", messages=[{"role": "user", "content": "hi"}])
            answers.append(reply.choices[0].message.content or "")

        caller = threading.Thread(target=ask)
        caller.start()
        inflight = f"{system.prefix}:{{acct-a}}:inflight"
        wait_until(lambda: system.redis.zcard(inflight) == 1, what="the job in the worker's hands")
        worker.send_signal(signal.SIGTERM)
        wait_until(lambda: probe(port, "/readyz") == (503, {"status": "draining"}), what="readiness to drop")
        assert probe(port, "/healthz") == (200, {"status": "ok"})
        caller.join(60)
        assert answers and answers[0]  # the job in hand finished: drained, not dropped
        assert worker.wait(30) == 0
        assert probe(port, "/healthz") is None  # and the endpoint went with the process
    finally:
        stop(worker)
