"""Writes one job's events back through Redis: the stream record plus the live pub/sub tap.

Each write is one command: the record entry (shared/redis/record.py) and the same bytes as a
reply frame to the waiting API process (shared/redis/reply.py), as one EVALSHA (a job's last
write, which carries its ack, as one pipeline; on a Cluster, where the two live on different
shards, always a pipeline); the events are encoded once for both. Mid-stream writes go out on a
connection held for the stream without waiting for their replies (worker/quiet.py: read in
batches, and before the last write, which therefore lands after all of them).
Everything up to and including the first token goes out at once (a role or block-start chunk
ahead of it must not start the coalescing window, or it would hold the first token back); after it,
deltas that arrive within `coalesce_ms` share one write.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import (
    BusyLoadingError,
    ClusterDownError,
    ConnectionError,
    NoScriptError,
    ReadOnlyError,
    TimeoutError,
    TryAgainError,
)

from shared.model import ReasoningDelta, StreamEvent, TextDelta, ToolArgsDelta
from shared.redis import record, reply
from shared.redis.client import publish
from shared.redis.record import encode_events
from worker.quiet import QuietAppends, Resend

# Errors of a deployment in motion (failover, restart): the write is sent again.
RETRYABLE = (ConnectionError, TimeoutError, ClusterDownError, TryAgainError, ReadOnlyError, BusyLoadingError)
WRITE_RETRY_SECONDS = 20.0
T = TypeVar("T")

# Events that carry generated tokens: the first write holding one opens the coalescing window.
TOKEN_EVENTS = (TextDelta, ToolArgsDelta, ReasoningDelta)


class EventWriter:
    def __init__(self, client: aioredis.Redis, out_key: str, channel: str, job_id: str,
                 coalesce_ms: float, ttl_seconds: int, next_seq: int = 1) -> None:
        self._client = client
        # On a Cluster the reply channel lives on the API process's shard, not the record's: the
        # entry and its frame go out as a pipeline of two commands (one per slot), not one script.
        self._sharded = isinstance(client, RedisCluster)
        self._quiet = None if self._sharded else QuietAppends(client)
        self._key = out_key
        self._channel = channel
        self._job_id = job_id.encode()
        self._coalesce = coalesce_ms / 1000
        self._ttl = ttl_seconds
        self._seq = next_seq
        self._first_seq = next_seq
        self._buffer: list[StreamEvent] = []
        self._last_write = 0.0  # stays 0 until a token has gone out: until then nothing waits
        self._pending: asyncio.Task[None] | None = None
        self._failed: BaseException | None = None
        self._lock = asyncio.Lock()  # writes go out strictly in sequence order
        self.written = 0  # events durably written

    def hold(self, events: list[StreamEvent]) -> None:
        """Buffers events for the closing write only (a whole answer needs no flush timer)."""
        self._buffer.extend(events)

    async def send(self, events: list[StreamEvent]) -> None:
        """Writes the events now, or, inside the coalescing window, with whatever joins them
        before it closes. Writing inline (not from a task) when the window is over is the common
        case for paced streams: it spares a task per chunk, and makes the stream loop wait for
        Redis before reading more, which is the backpressure we want."""
        self._buffer.extend(events)
        if self._pending is not None:
            return  # the scheduled flush takes these along
        delay = self._last_write + self._coalesce - time.monotonic()
        if delay <= 0:
            if self._failed is not None:
                raise self._failed
            await self._write()
        else:
            self._pending = asyncio.create_task(self._flush_after(delay))

    async def _flush_after(self, delay: float) -> None:
        try:
            await asyncio.sleep(delay)  # coalescing window, not synchronization
            self._pending = None
            await self._write()
        except Exception as exc:  # surfaced by close(); a lost write must fail the job
            self._failed = exc

    async def close(self, also: Callable[[Pipeline], None] | None = None) -> object:
        """Writes whatever is buffered, now, and refreshes the record's expiry. `also` queues one
        more command (the job's ack) into the same round trip; its reply is returned (it may be
        an exception object, for the caller to handle)."""
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None
        if self._failed is not None:
            raise self._failed
        return await self._write(final=True, also=also)

    async def abandon(self) -> bool:
        """Writes nothing more (a draining worker hands the job back); True when any write of this
        writer was attempted, so the record may hold entries the next worker must resume after."""
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None
        async with self._lock:  # a write cut off mid-flight has released it; wait for one that has not
            if self._quiet is not None:
                # what was sent lands before the hand-back, so the next worker's read of the
                # record sees it; what failed is the next worker's to write
                with contextlib.suppress(Exception):
                    await self._quiet.settle()
            return self._seq > self._first_seq

    async def confirm(self) -> None:
        """Waits until every write sent so far is in Redis (mid-stream writes do not wait)."""
        async with self._lock:
            if self._quiet is not None:
                await self._resend(await self._quiet.confirm())

    async def release(self) -> None:
        """Lets go of the stream's connection, if it still holds one (a job cancelled mid-stream)."""
        if self._quiet is not None:
            await self._quiet.discard()

    async def _write(self, final: bool = False, also: Callable[[Pipeline], None] | None = None) -> object:
        async with self._lock:
            return await self._write_locked(final, also)

    async def _write_locked(self, final: bool, also: Callable[[Pipeline], None] | None) -> object:
        if final and self._quiet is not None:
            await self._resend(await self._quiet.settle())
        if not self._buffer:
            if final:
                def expire_only(pipe: Pipeline) -> None:
                    pipe.expire(self._key, self._ttl)
                    if also is not None:
                        also(pipe)
                return _last(await self._send(expire_only, has_entry=False))
            return None
        events, self._buffer = self._buffer, []
        payload = encode_events(events)
        seq = self._seq
        self._seq += 1
        if self._last_write or any(isinstance(event, TOKEN_EVENTS) for event in events):
            self._last_write = time.monotonic()
        if also is None and not self._sharded:  # every write but a job's last: one command
            frame = reply.encode(self._job_id, seq, payload) if self._channel else b""
            ttl = self._ttl if seq == 1 or final else 0
            append = (self._key, seq, payload, ttl, self._channel, frame)
            if final or self._quiet is None:
                await self._retrying(lambda: record.append_now(self._client, *append))
            else:
                await self._resend(await self._quiet.send(append))
            self.written += len(events)
            return None

        def entry(pipe: Pipeline) -> None:
            record.append(pipe, self._key, seq, payload)
            if seq == 1 or final:
                pipe.expire(self._key, self._ttl)
            if self._channel:
                publish(pipe, self._channel, reply.encode(self._job_id, seq, payload))
            if also is not None:
                also(pipe)
        replies = await self._send(entry, has_entry=True)
        self.written += len(events)
        return _last(replies) if also is not None else _last([*replies, None])

    async def _resend(self, resend: Resend) -> None:
        """Sends again, the ordinary way and in order, what quiet writes could not land: a tail
        refused for a reason worth another try (a restart's empty script cache, a failover), or
        everything unconfirmed when their connection was lost."""
        if resend.error is not None and not isinstance(resend.error, (NoScriptError, *RETRYABLE)):
            raise resend.error
        for append in resend.appends:
            await self._retrying(lambda again=append: record.append_now(self._client, *again))  # type: ignore[misc]

    async def _send(self, queue: Callable[[Pipeline], None], has_entry: bool) -> list[object]:
        """One pipelined round trip, sent again while Redis fails over (see `_retrying`): the
        entry's explicit id makes a second XADD fail as "already there", which counts as
        written; a second publish is dropped by the API (it has that sequence number); the
        expiry is idempotent, and so is a second ack (the job is no longer in flight)."""

        async def once() -> list[object]:
            pipe = self._client.pipeline(transaction=False)
            queue(pipe)
            replies: list[object] = await pipe.execute(raise_on_error=False)
            if has_entry and record.already_written(replies[0]):
                replies[0] = b""
            failed = [r for r in replies if isinstance(r, RETRYABLE)]
            if failed:
                raise failed[0]
            return replies

        return await self._retrying(once)

    async def _retrying(self, attempt: Callable[[], Awaitable[T]]) -> T:
        """`attempt`, tried again while Redis is failing over (a lost node, a primary that became
        a replica) for up to WRITE_RETRY_SECONDS."""
        deadline = time.monotonic() + WRITE_RETRY_SECONDS
        delay = 0.05
        while True:
            try:
                return await attempt()
            except RETRYABLE:
                if time.monotonic() + delay > deadline:
                    raise
            await asyncio.sleep(delay)  # back off while the deployment fails over
            delay = min(delay * 2, 1.0)


def _last(replies: list[object]) -> object:
    """The extra command's reply; any failure of the record's own writes is raised."""
    for answer in replies[:-1]:
        if isinstance(answer, Exception):
            raise answer
    return replies[-1]
