"""shared/redis/pools.py: a checkout takes no loop turn, and still replaces a connection the
server closed. Against the session's private redis-server."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis

from shared.redis.client import Role, connect
from shared.redis.pools import LeanBlockingConnectionPool, LeanConnectionPool

pytestmark = pytest.mark.anyio

POOLS = [LeanConnectionPool, LeanBlockingConnectionPool]


async def turn_taken_by_checkout(pool: aioredis.ConnectionPool) -> bool:
    """Checks a warm connection out and in; True when another task got to run meanwhile."""
    ran: list[int] = []
    asyncio.get_running_loop().call_soon(ran.append, 1)
    connection = await pool.get_connection("PING")
    await pool.release(connection)
    return bool(ran)


@pytest.mark.parametrize("pool_class", POOLS)
async def test_a_checkout_takes_no_loop_turn(redis_url: str, pool_class: type[aioredis.ConnectionPool]) -> None:
    pool = pool_class.from_url(redis_url, max_connections=4)
    client = aioredis.Redis.from_pool(pool)
    try:
        assert await client.ping()
        assert not await turn_taken_by_checkout(pool)
    finally:
        await client.aclose()


async def test_the_librarys_pool_takes_one(redis_url: str) -> None:
    # what the lean pools save: the zero-timeout read redis-py makes at every checkout
    pool = aioredis.ConnectionPool.from_url(redis_url, max_connections=4)
    client = aioredis.Redis.from_pool(pool)
    try:
        assert await client.ping()
        assert await turn_taken_by_checkout(pool)
    finally:
        await client.aclose()


@pytest.mark.parametrize("role", [Role.API, Role.WORKER])
async def test_a_connection_the_server_closed_is_replaced_at_checkout(redis_url: str, role: Role) -> None:
    client = connect(redis_url, role, connections=2)
    killer = aioredis.Redis.from_url(redis_url)
    try:
        await client.client_setname("lean-pool-victim")
        pool = client.connection_pool
        connection = await pool.get_connection("PING")
        await pool.release(connection)
        killed = await killer.client_kill_filter(_id=await client.client_id())
        assert killed == 1
        reader = connection._reader  # type: ignore[attr-defined]
        async with asyncio.timeout(10):  # wait for the end of the stream to reach the idle connection
            assert await reader.read(1) == b""
        assert reader.at_eof()
        assert await client.get("lean-pool-missing") is None  # no ConnectionError: a fresh connection
        assert await client.client_getname() is None  # and it is a new one
    finally:
        await killer.aclose()
        await client.aclose()
