"""Losing Redis is a retryable 503 in the client's own protocol, never a bare 500."""

from __future__ import annotations

from pathlib import Path

import httpx

from shared.redis.embedded import EmbeddedRedis
from tests.conftest import CLIENT_KEY, SluiceSystem, two_account_model


def test_redis_outage_is_a_503_in_the_clients_protocol(tmp_path: Path) -> None:
    own = EmbeddedRedis()  # this test stops its Redis, so it must not share the session's
    accounts, models = two_account_model()
    system = SluiceSystem(tmp_path, own.url, accounts=accounts, models=models)
    try:
        own.stop()
        reply = httpx.post(f"{system.base_url}/v1/chat/completions", timeout=30,
                           json={"model": "test-model", "messages": [{"role": "user", "content": "x"}]},
                           headers={"authorization": f"Bearer {CLIENT_KEY}"})
        assert reply.status_code == 503
        assert reply.json()["error"]["message"] == "The queue is unavailable; retry shortly."
        assert reply.headers["retry-after"] == "1"
    finally:
        system.close()
