"""Every Redis client Sluice makes is made here: `connect` (asyncio) and `connect_sync`.

Contract: the URL names the deployment, the role sizes the connection pool.

    redis://, rediss://, unix://        one server (rediss: TLS)           supported
    redis+cluster://, redis+sentinel:// Redis Cluster / Sentinel            reserved: refused clearly

    Role.API     one client per API process: up to 512 connections, and a burst past that waits
                 (up to 10 s) for a free one instead of failing, which redis-py's default pool does
    Role.WORKER  one client per worker process: `connections` = the account's concurrency plus
                 room for claiming, heartbeats and the doorbell's blocking read
    Role.TOOL    `sluice status`, probes, tests: a small default pool

Cluster and Sentinel plug in at `_deployment`: each is a branch that returns its own client
class for the same roles. Every key one script touches already shares a hash tag (keys.py), so
the scripts need no change for Cluster.
"""

from __future__ import annotations

import random
from enum import Enum
from urllib.parse import urlsplit

import redis
import redis.asyncio as aioredis

API_MAX_CONNECTIONS = 512
API_CHECKOUT_TIMEOUT_SECONDS = 10
WORKER_SPARE_CONNECTIONS = 16
# While Redis is unreachable, whoever waits for it (a worker's claim loop, the API's reply
# subscription) retries after 0.1 s doubling up to this, with jitter, so a fleet neither spins
# nor reconnects in lockstep when Redis comes back. (redis-py's pools reconnect by themselves on
# the next command; requests in the API are not retried: they get a quick 503 instead.)
RECONNECT_MAX_SECONDS = 5.0


def backoff_seconds(failures: int) -> float:
    """The wait before reconnect attempt `failures` (1, 2, ...): exponential, with equal jitter."""
    step: float = min(RECONNECT_MAX_SECONDS, 0.1 * 2.0 ** min(failures, 10))
    return step / 2 + random.uniform(0, step / 2)


class Role(Enum):
    API = "api"
    WORKER = "worker"
    TOOL = "tool"


class UnsupportedRedisUrl(ValueError):
    """The URL names a Redis deployment Sluice cannot talk to (yet)."""


_SINGLE = ("redis", "rediss", "unix")
_RESERVED = {"redis+cluster": "Redis Cluster", "redis+sentinel": "Redis Sentinel"}


def _deployment(url: str) -> str:
    scheme = urlsplit(url).scheme.lower()
    if scheme in _SINGLE:
        return "single"
    if scheme in _RESERVED:
        raise UnsupportedRedisUrl(
            f"{_RESERVED[scheme]} ({scheme}://) is not supported yet; "
            "set redis_url to one server: redis://, rediss:// or unix://")
    raise UnsupportedRedisUrl(f"redis_url must start with redis://, rediss:// or unix:// (got {scheme or 'no'} scheme)")


def connect(url: str, role: Role, *, connections: int | None = None) -> aioredis.Redis:
    """An asyncio client that owns its pool (closing the client closes the pool).
    `connections` is the worker's concurrency (Role.WORKER only)."""
    _deployment(url)  # the only deployment today is a single server
    pool: aioredis.ConnectionPool
    if role is Role.API:
        pool = aioredis.BlockingConnectionPool.from_url(
            url, max_connections=API_MAX_CONNECTIONS, timeout=API_CHECKOUT_TIMEOUT_SECONDS)
    elif role is Role.WORKER:
        pool = aioredis.ConnectionPool.from_url(url, max_connections=(connections or 0) + WORKER_SPARE_CONNECTIONS)
    else:
        pool = aioredis.ConnectionPool.from_url(url)
    return aioredis.Redis.from_pool(pool)


def connect_sync(url: str, *, timeout: float | None = None) -> redis.Redis:
    """A blocking client for tools and probes; `timeout` bounds connecting and each reply."""
    _deployment(url)
    pool = redis.ConnectionPool.from_url(  # type: ignore[no-untyped-call]
        url, socket_connect_timeout=timeout, socket_timeout=timeout)
    return redis.Redis.from_pool(pool)
