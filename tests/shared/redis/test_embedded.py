"""The private redis-server `sluice dev` starts keeps an append-only file: a restart keeps the data."""

from __future__ import annotations

import pytest
import redis

from shared.redis.embedded import EmbeddedRedis
from shared.system import System, SystemOptions


@pytest.mark.parametrize("appendonly", [True, False])
def test_a_restart_keeps_the_data_only_with_the_append_only_file(appendonly: bool) -> None:
    server = EmbeddedRedis(appendonly=appendonly)
    try:
        client = redis.Redis.from_url(server.url)
        client.zadd("q:{acct}:ready", {"job-1": 1.0})
        client.close()
        server.restart()
        client = redis.Redis.from_url(server.url)
        assert client.config_get("appendonly")["appendonly"] == ("yes" if appendonly else "no")
        assert client.zrange("q:{acct}:ready", 0, -1) == ([b"job-1"] if appendonly else [])
        client.close()
    finally:
        server.stop()


def test_sluice_dev_starts_its_private_redis_with_the_append_only_file() -> None:
    # the options `sluice dev` (shared/cli.py: cmd_dev) passes for its private Redis
    system = System(SystemOptions(config={"key_prefix": "aof-check"}, embedded_redis="always", mocks=[],
                                  redis_appendonly=True))
    system._start_redis()  # the step `sluice dev` runs when no Redis answers
    try:
        client = redis.Redis.from_url(system.redis_url)
        assert client.config_get("appendonly")["appendonly"] == "yes"
        client.close()
    finally:
        system.stop()
