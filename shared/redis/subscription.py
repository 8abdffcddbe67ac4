"""One long-lived subscription to one channel, on any deployment, healing itself.

Contract: `listen(client, channel)` is an endless async iterator of message payloads (bytes),
with `RESUBSCRIBED` (None) yielded each time a subscription is in place: once at the start and
again after every reconnect, when anything published meanwhile may have been missed (the
consumer re-reads its records). Errors never escape: a lost connection is retried after an
exponential back-off with jitter (`client.backoff_seconds`), so a fleet of API processes does not
reconnect in lockstep when Redis comes back.

    single server, Sentinel   SUBSCRIBE through the client's pool (Sentinel's pool asks the
                              sentinels for the current primary on every new connection)
    Cluster                   SSUBSCRIBE on the primary that owns the channel's slot, over a
                              connection of its own: redis-py below 8 has no Cluster pub/sub, and
                              Sluice pins redis-py below 5.3 (docs/ARCHITECTURE.md). The slot map is
                              re-read after a failure; a failover ends the subscription either way
                              (the old primary sends SUNSUBSCRIBE, or its connection breaks), and
                              a PING every few seconds catches a node that went silent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from typing import Any, Final

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster

from shared.redis.client import backoff_seconds

log = logging.getLogger("sluice.redis")

RESUBSCRIBED: Final = None
PING_SECONDS = 5.0


async def listen(client: aioredis.Redis, channel: str) -> AsyncIterator[bytes | None]:
    failures = 0
    while True:
        try:
            if isinstance(client, RedisCluster):
                stream = _sharded(client, channel, refresh=failures > 0)
            else:
                stream = _plain(client, channel)
            async for item in stream:
                if item is RESUBSCRIBED:
                    failures = 0
                yield item
        except Exception as exc:  # any failure of a long-lived subscription means: subscribe again
            log.warning("subscription lost; subscribing again", extra={"channel": channel, "error": str(exc)})
        failures += 1
        await asyncio.sleep(backoff_seconds(failures))  # back off (with jitter) before reconnecting


async def _plain(client: aioredis.Redis, channel: str) -> AsyncIterator[bytes | None]:
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    try:
        await pubsub.subscribe(channel)
        yield RESUBSCRIBED
        while True:
            message = await pubsub.get_message(timeout=None)
            if message is not None and message.get("type") == "message":
                yield message["data"]
    finally:
        with contextlib.suppress(Exception):
            await pubsub.aclose()  # type: ignore[no-untyped-call]


class SubscriptionLost(ConnectionError):
    """The shard said the channel moved (SUNSUBSCRIBE after a failover) or stopped answering."""


async def _sharded(client: RedisCluster, channel: str, refresh: bool) -> AsyncIterator[bytes | None]:
    if refresh:  # a failover may have moved the slot: read the map again before choosing a node
        await client.nodes_manager.initialize()
    elif client._initialize:
        await client.initialize()
    node = client.get_node_from_key(channel)
    if node is None:
        raise SubscriptionLost("no node serves the channel's slot yet")
    kwargs: dict[str, Any] = dict(node.connection_kwargs)
    conn = node.connection_class(**kwargs)
    last_heard = time.monotonic()
    pinger: asyncio.Task[None] | None = None
    try:
        await conn.connect()  # type: ignore[no-untyped-call]
        await conn.send_command("SSUBSCRIBE", channel)
        reply = await conn.read_response()  # a MOVED error raises here: the map is re-read
        if not (isinstance(reply, list) and _kind(reply) == b"ssubscribe"):
            raise SubscriptionLost(f"unexpected reply to SSUBSCRIBE: {reply!r}")
        pinger = asyncio.create_task(_keepalive(conn, lambda: last_heard))
        yield RESUBSCRIBED
        while True:
            reply = await conn.read_response()
            last_heard = time.monotonic()
            kind = _kind(reply)
            if kind == b"smessage":
                yield reply[2]
            elif kind == b"sunsubscribe":
                raise SubscriptionLost("the shard gave up the channel's slot")
    finally:
        if pinger is not None:
            pinger.cancel()
        with contextlib.suppress(Exception):
            await conn.disconnect()


async def _keepalive(conn: Any, last_heard: Any) -> None:
    """PINGs a quiet subscription; if even the PONG does not come back, closes the connection,
    which ends the reader's wait with an error (and so a new subscription)."""
    while True:
        await asyncio.sleep(PING_SECONDS)  # a keepalive period, not synchronization
        if time.monotonic() - last_heard() < PING_SECONDS:
            continue
        with contextlib.suppress(Exception):
            await conn.send_command("PING")
        await asyncio.sleep(PING_SECONDS)
        if time.monotonic() - last_heard() >= 2 * PING_SECONDS:
            with contextlib.suppress(Exception):
                await conn.disconnect(nowait=True)
            return


def _kind(reply: object) -> bytes:
    if isinstance(reply, list) and reply:
        head = reply[0]
        return head.lower() if isinstance(head, bytes) else str(head).lower().encode()
    return b""
