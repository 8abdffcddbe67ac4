"""A submitted job's answer, read back exactly once and in order.

Entries arrive live from the reply hub; whenever a sequence number is skipped (or the hub
reports a GAP), the missing ones are read from the job's stream record, which is the source of
truth. Until a worker has the job, its client's wait deadline applies.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import redis.asyncio as aioredis

from shared.jobs import Job
from shared.redis import record
from shared.redis.record import Entry

if TYPE_CHECKING:
    from api.dispatch import Dispatcher

RECORD_READ_COUNT = 256


@dataclass(slots=True)
class Ticket:
    job: Job
    queue: asyncio.Queue[Entry]
    dispatcher: Dispatcher
    next_seq: int = 1
    enqueued_at: float = field(default_factory=time.monotonic)
    first_entry_at: float | None = None
    running: bool = False  # a worker has it: the queue deadline no longer applies
    on_release: Callable[[], None] | None = None  # run once when its answer is done (tenant settling)
    follows: bool = False  # another request's job (an Idempotency-Key retry): read from its record

    async def entries(self, keepalive: float) -> AsyncIterator[Entry | None]:
        """Yields entries in order; None every `keepalive` seconds of silence."""
        if self.follows:
            async for entry in self.dispatcher.follow_record(self.job, keepalive):
                yield entry
            return
        deadline = self.job.deadline_ms / 1000
        while True:
            timeout = keepalive
            if self.first_entry_at is None and not self.running:
                timeout = min(keepalive, max(0.01, deadline - time.time()))
            try:
                entry = await asyncio.wait_for(self.queue.get(), timeout)
            except TimeoutError:
                if self.first_entry_at is None and not self.running and time.time() >= deadline:
                    await self.dispatcher.give_up(self)  # raises rate_limited if still queued
                yield None
                continue
            seq = entry[0]
            if seq == self.next_seq:
                self._mark()
                self.next_seq += 1
                yield entry
            elif seq > self.next_seq or seq < 0:  # a gap: the record has what we missed
                for missed in await self.dispatcher.read_record(self.job.id, self.next_seq):
                    self._mark()
                    self.next_seq = missed[0] + 1
                    yield missed
            # seq < next_seq: already delivered from the record; drop the duplicate

    def _mark(self) -> None:
        if self.first_entry_at is None:
            self.first_entry_at = time.monotonic()


async def follow_record(client: aioredis.Redis, key: str, keepalive: float) -> AsyncIterator[Entry | None]:
    """A job's record from its start, then each entry as it is written; None every `keepalive`
    of silence. For readers on any API process (a resuming client, an Idempotency-Key retry)."""
    last = 0
    while True:
        entries = await record.read_after(client, key, last, RECORD_READ_COUNT, int(keepalive * 1000))
        if not entries:
            yield None
            continue
        for entry in entries:
            last = entry[0]
            yield entry
