"""One pub/sub connection per API process, fanned out to the requests waiting on it.

The process subscribes to its own reply channel once, at start-up, before it enqueues
anything, so no message can be published before the subscription exists. Each message is a
reply frame (shared/redis/reply.py); the hub hands its entry to that job's queue. If the
subscription drops, every waiter is told (GAP) and re-reads the job's stream record, which is
the source of truth.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from shared.redis import reply
from shared.redis.client import backoff_seconds
from shared.redis.record import Entry

log = logging.getLogger("sluice.api")

GAP: Entry = (-1, b"")  # "you may have missed messages: re-read the record"


class ReplyHub:
    def __init__(self, client: aioredis.Redis, channel: str) -> None:
        self._client = client
        self.channel = channel
        self._waiters: dict[bytes, asyncio.Queue[Entry]] = {}
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run())
        await self._ready.wait()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def register(self, job_id: str) -> asyncio.Queue[Entry]:
        queue: asyncio.Queue[Entry] = asyncio.Queue()
        self._waiters[job_id.encode()] = queue
        return queue

    def unregister(self, job_id: str) -> None:
        self._waiters.pop(job_id.encode(), None)

    def deliver(self, message: bytes) -> None:
        """Hands one reply frame to its job's waiter, if this process still has one."""
        try:
            job_id, entry = reply.decode(message)
        except ValueError:
            log.error("unreadable reply frame dropped", extra={"channel": self.channel})
            return
        waiter = self._waiters.get(job_id)
        if waiter is not None:
            waiter.put_nowait(entry)

    async def _run(self) -> None:
        failures = 0
        while True:
            pubsub = self._client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self.channel)
                if self._ready.is_set():  # a reconnect: anything may have been missed
                    for queue in self._waiters.values():
                        queue.put_nowait(GAP)
                self._ready.set()
                failures = 0
                while True:
                    message = await pubsub.get_message(timeout=None)
                    if message is not None and message.get("type") == "message":
                        self.deliver(message["data"])
            except (RedisError, OSError):
                failures += 1
                delay = backoff_seconds(failures)
                log.warning("reply subscription lost; resubscribing", extra={"retry_s": round(delay, 2)})
                await asyncio.sleep(delay)  # back off (with jitter) before reconnecting
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
