"""The client factory: which URLs it accepts, and the pool each role gets."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis

from shared.redis.client import (
    API_MAX_CONNECTIONS,
    REDIS_PORT,
    SENTINEL_PORT,
    WORKER_SPARE_CONNECTIONS,
    Role,
    UnsupportedRedisUrl,
    connect,
    connect_sync,
    is_cluster,
    parse_url,
)


def test_sentinel_url_names_sentinels_service_and_db() -> None:
    dep = parse_url("redis+sentinel://:s3cret@10.0.0.1:26380,10.0.0.2,[::1]:26381/mymaster/2")
    assert dep.kind == "sentinel" and dep.service == "mymaster" and dep.db == 2
    assert dep.hosts == (("10.0.0.1", 26380), ("10.0.0.2", SENTINEL_PORT), ("::1", 26381))
    assert dep.password == "s3cret" and not dep.tls
    assert parse_url("rediss+sentinel://10.0.0.1/m").tls


def test_cluster_url_is_a_seed_list() -> None:
    dep = parse_url("redis+cluster://user:pw@10.0.0.1:7000,10.0.0.2:7001,10.0.0.3")
    assert dep.kind == "cluster" and dep.username == "user" and dep.password == "pw"
    assert dep.hosts == (("10.0.0.1", 7000), ("10.0.0.2", 7001), ("10.0.0.3", REDIS_PORT))
    assert parse_url("redis+cluster://10.0.0.1:7000/0").db == 0


@pytest.mark.parametrize(("url", "message"), [
    ("redis+sentinel://10.0.0.1:26379", "needs the primary's service name"),
    ("redis+sentinel://10.0.0.1:26379/m/x", "database must be a number"),
    ("redis+cluster://10.0.0.1:7000/3", "only database 0"),
    ("redis+cluster://", "names no host"),
    ("redis+cluster://:hunter2@10.0.0.1:70x0", "port must be a number"),
    ("redis+cluster://10.0.0.1:99999", "is not host:port"),
    ("redis+shards://10.0.0.1", "must start with redis://"),
])
def test_bad_cluster_and_sentinel_urls_say_what_is_wrong(url: str, message: str) -> None:
    for make in (lambda: connect(url, Role.API), lambda: connect_sync(url)):
        with pytest.raises(UnsupportedRedisUrl, match=message) as err:
            make()
        assert "hunter2" not in str(err.value)


def test_cluster_and_sentinel_urls_build_their_clients() -> None:
    cluster = connect("redis+cluster://127.0.0.1:1,127.0.0.1:2", Role.WORKER, connections=4)
    assert is_cluster(cluster)
    sentinel = connect("redis+sentinel://127.0.0.1:1/mymaster", Role.API)
    assert sentinel.connection_pool.max_connections == API_MAX_CONNECTIONS
    assert not is_cluster(sentinel)


@pytest.mark.parametrize("url", ["http://127.0.0.1:6379", "127.0.0.1:6379", "memcached://x"])
def test_other_schemes_get_a_clear_error(url: str) -> None:
    with pytest.raises(UnsupportedRedisUrl, match=r"redis://, rediss://, unix://, redis\+sentinel:// or redis\+cluster://"):
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
