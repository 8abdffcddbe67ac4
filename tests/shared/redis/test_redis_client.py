"""The client factory: which URLs it accepts, and the pool each role gets."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis

from shared.redis.client import (
    API_MAX_CONNECTIONS,
    WORKER_SPARE_CONNECTIONS,
    Role,
    UnsupportedRedisUrl,
    connect,
    connect_sync,
)


@pytest.mark.parametrize("url", ["redis+cluster://10.0.0.1:7000", "redis+sentinel://10.0.0.1:26379/mymaster"])
def test_cluster_and_sentinel_urls_are_refused_by_name(url: str) -> None:
    name = "Cluster" if "cluster" in url else "Sentinel"
    for make in (lambda: connect(url, Role.API), lambda: connect_sync(url)):
        with pytest.raises(UnsupportedRedisUrl, match=f"Redis {name}.*not supported yet"):
            make()


@pytest.mark.parametrize("url", ["http://127.0.0.1:6379", "127.0.0.1:6379", "memcached://x"])
def test_other_schemes_get_a_clear_error(url: str) -> None:
    with pytest.raises(UnsupportedRedisUrl, match="redis://, rediss:// or unix://"):
        connect(url, Role.TOOL)


def test_roles_size_their_pools() -> None:
    api = connect("redis://127.0.0.1:1/0", Role.API)
    worker = connect("redis://127.0.0.1:1/0", Role.WORKER, connections=4)
    assert isinstance(api.connection_pool, aioredis.BlockingConnectionPool)
    assert api.connection_pool.max_connections == API_MAX_CONNECTIONS
    assert not isinstance(worker.connection_pool, aioredis.BlockingConnectionPool)
    assert worker.connection_pool.max_connections == 4 + WORKER_SPARE_CONNECTIONS


def test_tls_and_unix_socket_urls_are_single_servers() -> None:
    assert connect("rediss://127.0.0.1:1/0", Role.TOOL).connection_pool.connection_class.__name__ == "SSLConnection"
    unix = connect("unix:///tmp/redis.sock", Role.TOOL)
    assert unix.connection_pool.connection_class.__name__ == "UnixDomainSocketConnection"


@pytest.mark.anyio
async def test_each_role_talks_to_a_real_server_and_closes_its_pool(redis_url: str) -> None:
    for role in Role:
        client = connect(redis_url, role, connections=2)
        assert await client.ping()
        await client.aclose()
        assert client.auto_close_connection_pool  # the client owns its pool: nothing leaks
    sync = connect_sync(redis_url, timeout=1)
    try:
        assert sync.ping()
    finally:
        sync.close()  # type: ignore[no-untyped-call]
