"""A client that hangs up: its job is withdrawn from the queue, or its upstream call aborted.

    whole answer   the client leaves -> withdraw the job if it is still queued (cancel.lua), else
                   tell its worker to abort now
    stream         the client leaves -> a grace period (`stream_cancel_grace_seconds`) in which a
                   reconnect with Last-Event-ID, on any API process, calls the cancel off; after
                   it, the same as a whole answer

The signal to the worker is the deployment's `cancels` ZSET (shared/redis/keys.py): job id -> the
ms from which its worker must abort it, one key whatever account the job runs on. A worker with
jobs running reads the due entries once per `cancel_poll_seconds` (worker/cancel.py), so the
per-chunk cost on both sides is nothing. The
queued case is the API's own timer: if this process dies inside a grace period, a queued job
runs anyway (its answer stays resumable), and a running one is still aborted by its worker.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from shared.jobs import Job
from shared.redis.keys import Keys

log = logging.getLogger("sluice.api")


class Cancellations:
    def __init__(self, client: aioredis.Redis, keys: Keys, withdraw: Callable[[Job], Awaitable[bool]],
                 grace_seconds: float) -> None:
        self._redis = client
        self._key = keys.cancels()
        self._withdraw = withdraw
        self.grace = grace_seconds
        self._timers: set[asyncio.Task[None]] = set()

    async def abort_running(self, job_id: str, after_seconds: float = 0.0) -> int:
        """Asks the job's worker to abort it from `after_seconds` on; returns the ms it takes effect."""
        at_ms = int((time.time() + after_seconds) * 1000)
        await self._redis.zadd(self._key, {job_id: at_ms})
        return at_ms

    async def call_off(self, job_id: str) -> None:
        """The client is back (it resumed its stream): nothing is cancelled."""
        await self._redis.zrem(self._key, job_id)

    def stream_left(self, job_id: str, job: Job | None = None) -> None:
        """A streaming client hung up: cancel its job unless it reconnects within the grace period.
        With the `job` (the process that queued it), a job still queued then is withdrawn;
        without it (a resumed stream), its worker aborts it once it runs. Runs as a task of its
        own: the response that noticed the hang-up is being torn down."""
        task = asyncio.create_task(self._cancel_after_grace(job_id, job))
        self._timers.add(task)
        task.add_done_callback(self._timers.discard)

    async def _cancel_after_grace(self, job_id: str, job: Job | None) -> None:
        try:
            armed = await self.abort_running(job_id, self.grace)
            if job is None:
                return
            await asyncio.sleep(self.grace)  # the grace period itself, not a synchronization
            score = await self._redis.zscore(self._key, job_id)
            if score is None or int(score) != armed:
                return  # the client came back (or came back and left again: a newer timer owns it)
            if await self._withdraw(job):
                await self._redis.zrem(self._key, job_id)
                log.info("client left; queued stream dropped", extra={"request_id": job_id})
        except RedisError:
            log.warning("could not cancel an abandoned stream", extra={"request_id": job_id})
