"""Writes one job's events back through Redis: the stream record plus the live pub/sub tap.

Each write is one pipelined round trip: the record entry (shared/redis/record.py) and the same
bytes as a reply frame to the waiting API process (shared/redis/reply.py); the events are
encoded once for both. Everything up to and including the first token goes out at once
(a role or block-start chunk ahead of it must not start the coalescing window, or it would hold
the first token back); after it, deltas that arrive within `coalesce_ms` share one write.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline

from shared.model import ReasoningDelta, StreamEvent, TextDelta, ToolArgsDelta
from shared.redis import record, reply
from shared.redis.record import encode_events

# Events that carry generated tokens: the first write holding one opens the coalescing window.
TOKEN_EVENTS = (TextDelta, ToolArgsDelta, ReasoningDelta)


class EventWriter:
    def __init__(self, client: aioredis.Redis, out_key: str, channel: str, job_id: str,
                 coalesce_ms: float, ttl_seconds: int, next_seq: int = 1) -> None:
        self._client = client
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
            return self._seq > self._first_seq

    async def _write(self, final: bool = False, also: Callable[[Pipeline], None] | None = None) -> object:
        async with self._lock:
            return await self._write_locked(final, also)

    async def _write_locked(self, final: bool, also: Callable[[Pipeline], None] | None) -> object:
        if not self._buffer:
            if final:
                pipe = self._client.pipeline(transaction=False)
                pipe.expire(self._key, self._ttl)
                if also is not None:
                    also(pipe)
                return _last(await pipe.execute(raise_on_error=False))
            return None
        events, self._buffer = self._buffer, []
        payload = encode_events(events)
        seq = self._seq
        self._seq += 1
        pipe = self._client.pipeline(transaction=False)
        record.append(pipe, self._key, seq, payload)
        if seq == 1 or final:
            pipe.expire(self._key, self._ttl)
        if self._channel:
            pipe.publish(self._channel, reply.encode(self._job_id, seq, payload))
        if also is not None:
            also(pipe)
        if self._last_write or any(isinstance(event, TOKEN_EVENTS) for event in events):
            self._last_write = time.monotonic()
        replies = await pipe.execute(raise_on_error=also is None)
        self.written += len(events)
        return _last(replies) if also is not None else None


def _last(replies: list[object]) -> object:
    """The extra command's reply; any failure of the record's own writes is raised."""
    for answer in replies[:-1]:
        if isinstance(answer, Exception):
            raise answer
    return replies[-1]
