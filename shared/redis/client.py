"""Every Redis client Sluice makes is made here: `connect` (asyncio) and `connect_sync`.

Contract: the URL names the deployment, the role sizes the connection pool.

    redis://, rediss://, unix://   one server (rediss: TLS); Valkey is the same protocol
    redis+sentinel://[user:pass@]host:port,host:port/<service>[/<db>]
                                   Sentinel: the sentinels are asked for <service>'s primary, and
                                   asked again whenever a connection breaks or lands on a replica
    redis+cluster://[user:pass@]host:port,host:port,...
                                   Cluster: the hosts are seeds; the slot map is read from them and
                                   re-read on MOVED or a lost node
    rediss+sentinel://, rediss+cluster://  the same over TLS (sentinels and data nodes alike)

    Role.API     one client per API process: up to 512 connections, and a burst past that waits
                 (up to 10 s) for a free one instead of failing, which redis-py's default pool does
                 (single server; Sentinel and Cluster get 512 per node, past which a command fails)
    Role.WORKER  one client per worker process: `connections` = the account's concurrency plus
                 room for claiming, heartbeats and the doorbell's blocking read
    Role.TOOL    `sluice status`, probes, tests: a small default pool

A Cluster client is a `RedisCluster`, typed here as the `Redis` it stands in for: it offers every
command Sluice sends (tests/cluster runs the spine on a real Cluster). What differs is in three
places only: scripts queued on a pipeline (shared/redis/scripts.py), publishing a reply and
subscribing to a channel (`publish` below, shared/redis/subscription.py).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Literal, cast
from urllib.parse import parse_qs, unquote, urlsplit

import redis
import redis.asyncio as aioredis
import redis.cluster as sync_cluster
import redis.sentinel as sync_sentinel
from redis.asyncio.cluster import ClusterNode, ClusterPipeline, RedisCluster
from redis.asyncio.sentinel import Sentinel

from shared.redis.pools import LeanBlockingConnectionPool, LeanConnectionPool

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
SENTINEL_PORT = 26379
REDIS_PORT = 6379


class Role(Enum):
    API = "api"
    WORKER = "worker"
    TOOL = "tool"


class UnsupportedRedisUrl(ValueError):
    """The URL does not name a Redis deployment Sluice can talk to; the message says why."""


_SINGLE = ("redis", "rediss", "unix")
_SCHEMES = "redis://, rediss://, unix://, redis+sentinel:// or redis+cluster://"


@dataclass(frozen=True, slots=True)
class Deployment:
    """What a redis_url names (secrets stay in `username`/`password`, never in a message)."""

    kind: Literal["single", "sentinel", "cluster"]
    url: str
    hosts: tuple[tuple[str, int], ...] = ()
    service: str = ""
    db: int = 0
    username: str | None = None
    password: str | None = None
    tls: bool = False
    options: dict[str, str] = field(default_factory=dict)

    def node_kwargs(self) -> dict[str, Any]:
        """Connection settings for each data node (and each sentinel)."""
        kwargs: dict[str, Any] = {"username": self.username, "password": self.password}
        if self.tls:
            kwargs["ssl"] = True
        return kwargs


def parse_url(url: str) -> Deployment:
    """Reads a redis_url; raises UnsupportedRedisUrl naming what is wrong (never the password)."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme in _SINGLE:
        return Deployment("single", url)
    base, _, flavour = scheme.partition("+")
    if base not in ("redis", "rediss") or flavour not in ("sentinel", "cluster"):
        raise UnsupportedRedisUrl(f"redis_url must start with {_SCHEMES} (got {scheme or 'no'} scheme)")
    userinfo, _, hostlist = parts.netloc.rpartition("@")
    username, _, password = userinfo.partition(":")
    hosts = tuple(_host(h, flavour) for h in hostlist.split(",") if h.strip())
    if not hosts:
        raise UnsupportedRedisUrl(f"redis_url ({scheme}://) names no host: list host:port[,host:port...]")
    path = [p for p in parts.path.split("/") if p]
    options = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    common: dict[str, Any] = {"username": unquote(username) or None, "password": unquote(password) or None,
              "tls": base == "rediss", "options": options}
    if flavour == "sentinel":
        if not path or len(path) > 2:
            raise UnsupportedRedisUrl(
                "redis+sentinel:// needs the primary's service name: redis+sentinel://host:port,host:port/<service>[/<db>]")
        return Deployment("sentinel", url, hosts, service=unquote(path[0]), db=_db(path[1:], scheme), **common)
    if path:
        db = _db(path, scheme)
        if db != 0 or len(path) > 1:
            raise UnsupportedRedisUrl("redis+cluster:// has only database 0: drop the path after the hosts")
    return Deployment("cluster", url, hosts, **common)


def _host(text: str, flavour: str) -> tuple[str, int]:
    text = text.strip()
    if text.startswith("["):  # [ipv6]:port
        host, _, rest = text[1:].partition("]")
        port_text = rest.removeprefix(":")
    else:
        host, _, port_text = text.rpartition(":") if ":" in text else (text, "", "")
    default = SENTINEL_PORT if flavour == "sentinel" else REDIS_PORT
    try:
        port = int(port_text) if port_text else default
    except ValueError:
        raise UnsupportedRedisUrl(f"redis_url: {text!r} is not host:port (the port must be a number)") from None
    if not host or not 0 < port < 65536:
        raise UnsupportedRedisUrl(f"redis_url: {text!r} is not host:port")
    return host, port


def _db(path: list[str], scheme: str) -> int:
    if not path:
        return 0
    if not path[0].isdigit():
        raise UnsupportedRedisUrl(f"{scheme}:// database must be a number (got {path[0]!r})")
    return int(path[0])


def connect(url: str, role: Role, *, connections: int | None = None) -> aioredis.Redis:
    """An asyncio client that owns its pool (closing the client closes the pool).
    `connections` is the worker's concurrency (Role.WORKER only)."""
    dep = parse_url(url)
    size = _pool_size(role, connections)
    if dep.kind == "cluster":
        cluster = _Cluster(  # type: ignore[abstract]
            startup_nodes=[ClusterNode(h, p) for h, p in dep.hosts], max_connections=size or 2**31,
            # A MOVED only re-points its slot (a failover answers MOVED for every slot it moved).
            # The library's default also closes every connection of the client on each 5th
            # MOVED, failing the commands other tasks have in flight on healthy nodes.
            reinitialize_steps=0, **dep.node_kwargs())
        return cast(aioredis.Redis, cluster)  # same command surface: see the module docstring
    if dep.kind == "sentinel":
        sentinel = Sentinel(  # type: ignore[no-untyped-call]
            list(dep.hosts), sentinel_kwargs=dep.node_kwargs(), **dep.node_kwargs())
        kwargs: dict[str, Any] = {"db": dep.db}
        if size:
            kwargs["max_connections"] = size
        primary: aioredis.Redis = sentinel.master_for(dep.service, **kwargs)  # owns its pool (from_pool)
        return primary
    pool: aioredis.ConnectionPool
    if role is Role.API:
        pool = LeanBlockingConnectionPool.from_url(
            url, max_connections=API_MAX_CONNECTIONS, timeout=API_CHECKOUT_TIMEOUT_SECONDS)
    elif role is Role.WORKER:
        pool = LeanConnectionPool.from_url(url, max_connections=size)
    else:
        pool = aioredis.ConnectionPool.from_url(url)
    return aioredis.Redis.from_pool(pool)


class _Cluster(RedisCluster):
    def get_default_node(self) -> ClusterNode:
        # redis-py < 5.3 drops the default node while it re-reads the slot map after a lost
        # node, and a pipeline that met an error meanwhile reads `.name` off None. Before the
        # map is read again, any known node (or a placeholder no command uses) does.
        node = self.nodes_manager.default_node
        if node is None:
            node = next(iter(self.nodes_manager.nodes_cache.values()), None) or ClusterNode("", 0)
        return node


def _pool_size(role: Role, connections: int | None) -> int:
    if role is Role.API:
        return API_MAX_CONNECTIONS
    if role is Role.WORKER:
        return (connections or 0) + WORKER_SPARE_CONNECTIONS
    return 0  # the library's default


def connect_sync(url: str, *, timeout: float | None = None) -> redis.Redis:
    """A blocking client for tools and probes; `timeout` bounds connecting and each reply."""
    dep = parse_url(url)
    timeouts: dict[str, Any] = {"socket_connect_timeout": timeout, "socket_timeout": timeout}
    if dep.kind == "cluster":
        cluster = sync_cluster.RedisCluster(  # type: ignore[abstract]
            startup_nodes=[sync_cluster.ClusterNode(h, p) for h, p in dep.hosts],  # type: ignore[no-untyped-call]
            **timeouts, **dep.node_kwargs())
        return cast(redis.Redis, cluster)
    if dep.kind == "sentinel":
        sentinel = sync_sentinel.Sentinel(  # type: ignore[no-untyped-call]
            list(dep.hosts), sentinel_kwargs={**timeouts, **dep.node_kwargs()}, **timeouts, **dep.node_kwargs())
        primary: redis.Redis = sentinel.master_for(dep.service, db=dep.db)  # type: ignore[no-untyped-call]
        return primary
    pool = redis.ConnectionPool.from_url(url, **timeouts)  # type: ignore[no-untyped-call]
    return redis.Redis.from_pool(pool)


def is_cluster(client: object) -> bool:
    return isinstance(client, (RedisCluster, ClusterPipeline))


def publish(pipe: object, channel: str, message: bytes) -> None:
    """Queues a live reply on `pipe`. On a Cluster it is sharded (SPUBLISH): it goes to the
    channel's shard only, where its subscriber listens, instead of to every node."""
    if isinstance(pipe, ClusterPipeline):
        pipe.execute_command("SPUBLISH", channel, message)
    else:
        cast(aioredis.Redis, pipe).publish(channel, message)
