"""Aborting jobs whose clients left: the worker's side of api/cancel.py.

While this process has jobs running it reads the due entries of the `cancels` ZSET (job id -> ms
from which to abort; one key for the deployment, so a job moved to another account is still
found) once per `cancel_poll_seconds`: one pipelined round trip for all its jobs, and nothing at
all per stream chunk or while idle. A job named there is cancelled where it stands,
which closes its upstream connection (worker/upstream.py), so the provider stops generating.
Its reservation is then reconciled with what it really used: the prompt (sent in full) and
the output already streamed into its record (about four characters per token).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Mapping

import redis.asyncio as aioredis

from shared.jobs import Job
from shared.model import ReasoningDelta, TextDelta, ToolArgsDelta
from shared.redis.keys import Keys
from worker.resume import Record

log = logging.getLogger("sluice.worker")

# An entry nobody acted on for this long names a job that finished first; it is dropped.
STALE_MS = 60_000


class CancelWatch:
    def __init__(self, client: aioredis.Redis, keys: Keys, poll_seconds: float) -> None:
        self._redis = client
        self._key = keys.cancels()
        self._poll = poll_seconds

    async def run(self, running: Mapping[str, object], abort: Callable[[str], None]) -> None:
        while True:
            await asyncio.sleep(self._poll)  # the poll period: the whole per-job cost of cancellation
            if not running:
                continue
            try:
                await self._check(running, abort)
            except Exception:
                log.warning("could not read cancelled jobs", exc_info=True)

    async def _check(self, running: Mapping[str, object], abort: Callable[[str], None]) -> None:
        now = int(time.time() * 1000)
        pipe = self._redis.pipeline(transaction=False)
        pipe.zrangebyscore(self._key, "-inf", now)
        pipe.zremrangebyscore(self._key, "-inf", now - STALE_MS)
        due, _ = await pipe.execute()
        mine = [job_id for job_id in (raw.decode() for raw in due) if job_id in running]
        if mine:
            await self._redis.zrem(self._key, *mine)
            for job_id in mine:
                log.info("client left; aborting its upstream call", extra={"request_id": job_id})
                abort(job_id)


def partial_usage(job: Job, record: Record) -> tuple[int, int]:
    """What an aborted call used: the prompt estimate, and the output its record holds."""
    chars = 0
    for event in record.events:
        if isinstance(event, TextDelta | ReasoningDelta):
            chars += len(event.text)
        elif isinstance(event, ToolArgsDelta):
            chars += len(event.json)
    return job.input_estimate, math.ceil(chars / 4)
