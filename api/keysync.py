"""Keeps an API process's copy of the key ring current: keys made, rotated or revoked on any
process (or by `sluice keys`) work, or stop working, here within a second, with no restart.

Two ways to notice a change, so one failing leaves the other: keyring.lua publishes each new
version (reloaded at once; sharded pub/sub on a Cluster, through shared/redis/subscription.py),
and the version counter is polled every POLL_SECONDS in case a message was missed (a reconnect,
a subscription lost). A reload reads the whole ring in one
round trip; rings are small (one record per key).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from redis.exceptions import RedisError

from api.auth import ClientKeys
from shared.redis.subscription import listen
from shared.tenants.keystore import KeyStore

log = logging.getLogger("sluice.api")

POLL_SECONDS = 0.5


class KeySync:
    def __init__(self, store: KeyStore, clients: ClientKeys) -> None:
        self.store = store
        self.clients = clients
        self._tasks: list[asyncio.Task[None]] = []
        self._wake = asyncio.Event()

    async def start(self) -> None:
        await self.reload()
        self._tasks = [asyncio.create_task(self._poll()), asyncio.create_task(self._listen())]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, RedisError, OSError):
                await task

    async def reload(self) -> None:
        version, ring = await self.store.snapshot()
        self.clients.replace_ring(version, ring)

    async def _poll(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), POLL_SECONDS)
            self._wake.clear()
            try:
                if await self.store.version() != self.clients.ring_version:
                    await self.reload()
            except (RedisError, OSError):
                log.warning("key ring reload failed; keeping the last one")

    async def _listen(self) -> None:
        # Each message, and each (re)subscription (anything published meanwhile was missed),
        # wakes the poll to compare versions at once. `listen` retries on its own, forever.
        async for _ in listen(self.store.redis, self.store.keys.changed):
            self._wake.set()
