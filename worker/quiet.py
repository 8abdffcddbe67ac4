"""A stream's mid-stream record writes, sent on a connection of their own whose replies are read in
batches, not one by one.

A streamed answer is one record write per chunk (shared/redis/record.py: `append_now`). Waiting
for each write's reply costs the worker a second wake-up per chunk besides the provider's: on a
virtual machine a wake-up is most of what a chunk costs (docs/benchmarks.md, `python -m
bench.syscalls`). Here the writes go out on one connection held for the stream, with reading
paused on its socket, so the replies wait in the kernel and wake nobody; they are read, every one
of them and in order, every CONFIRM_EVERY writes and before the job's last write (`settle`).

Nothing is lost by reading late, because a record entry's id is chosen by the writer: a write sent
again lands once (a second XADD of an id is refused as "already there", which counts as written),
and Redis runs one connection's commands in order, so what failed is always a tail of what was
sent (a lost connection, a primary turned replica) and is sent again, in order, the ordinary way.
The writes are EVALs, script body included, not EVALSHAs: an empty script cache (a restart, a
SCRIPT FLUSH) refuses an EVALSHA, and another writer loading the script meanwhile would let a
later one land. The one failure that is not a tail, a write refused while a later one landed
(out of memory for a moment), would leave a hole in the record; it is raised, as it was when each
write was awaited.

The live reply frames are unaffected: each write still publishes its entry as it runs.
"""

from __future__ import annotations

import asyncio
import weakref
from dataclasses import dataclass, field

import redis.asyncio as aioredis
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import ConnectionError, ResponseError, TimeoutError

from shared.redis import record

# Replies are read after this many writes, so the replies waiting in the kernel and the writes
# kept for sending again stay few.
CONFIRM_EVERY = 64
# Streams of one client (one worker process) that may hold a connection of their own at once:
# each is one more Redis connection for as long as its stream lasts, so past this many (an
# account with a concurrency in the thousands) further streams' writes are awaited as before.
HELD_PER_CLIENT = 128

Append = tuple[str, int, bytes, int, str, bytes]  # record.append_now's arguments, client aside

# Errors after which what was sent is unknown from one point on: all of it is sent again.
_LOST = (ConnectionError, TimeoutError, OSError)


@dataclass(slots=True)
class Resend:
    """Writes to send again the ordinary way, in order: a tail that failed with `error` (the writer
    decides whether that error is worth another try), or, with no error, all that was unconfirmed
    when the connection was lost."""

    appends: list[Append] = field(default_factory=list)
    error: ResponseError | None = None


NOTHING = Resend()


class RecordHole(Exception):
    """A write was refused while a later one landed: the record lacks an entry in its middle."""

    def __init__(self, error: ResponseError) -> None:
        super().__init__(str(error))
        self.error = error


class _Held:
    """How many streams hold a connection of one pool (see HELD_PER_CLIENT)."""

    __slots__ = ("count",)

    def __init__(self) -> None:
        self.count = 0


_held: weakref.WeakKeyDictionary[aioredis.ConnectionPool, _Held] = weakref.WeakKeyDictionary()


class QuietAppends:
    def __init__(self, client: aioredis.Redis, held_limit: int = HELD_PER_CLIENT) -> None:
        self._pool = client.connection_pool
        self._held = _held.setdefault(self._pool, _Held())
        self._limit = held_limit
        self._conn: AbstractConnection | None = None
        self._unconfirmed: list[Append] = []

    async def send(self, append: Append) -> Resend:
        """Sends the write without waiting for its reply; every CONFIRM_EVERY writes, reads the
        replies due. Returns what must be sent again (usually nothing)."""
        if self._conn is not None and not self._conn.is_connected:
            # cut off mid-command (a cancelled flush: redis-py closes a connection a command left
            # half done): what it carried is unknown, so all of it goes again, this write too
            lost = await self._lost()
            return Resend([*lost.appends, append])
        if self._conn is None and self._held.count >= self._limit:
            return Resend([append])  # no connection to spare: this write goes the ordinary way
        self._unconfirmed.append(append)
        try:
            conn = self._conn or await self._open()
            await conn.send_packed_command(conn.pack_command(*record.append_eval(*append)), check_health=False)
        except _LOST:
            return await self._lost()
        if len(self._unconfirmed) >= CONFIRM_EVERY:
            return await self._confirm(keep=True)
        return NOTHING

    async def confirm(self) -> Resend:
        """Reads the replies due now, keeping the connection for more writes."""
        if self._conn is None:
            return Resend(self._take_unconfirmed())
        return await self._confirm(keep=True)

    async def settle(self) -> Resend:
        """Reads every reply still due and gives the connection back. Called before the job's
        last write, which must land after these."""
        if self._conn is None:
            return Resend(self._take_unconfirmed())
        return await self._confirm(keep=False)

    async def discard(self) -> None:
        """Closes the connection unread (the job was cancelled, failed or handed back)."""
        self._unconfirmed = []
        await self._drop()

    async def _open(self) -> AbstractConnection:
        conn: AbstractConnection = await self._pool.get_connection("EVALSHA")  # type: ignore[no-untyped-call]
        self._conn = conn
        self._held.count += 1
        _transport(conn).pause_reading()
        return conn

    async def _confirm(self, keep: bool) -> Resend:
        conn = self._conn
        assert conn is not None
        if not conn.is_connected:  # cut off mid-command: see send()
            return await self._lost()
        sent, self._unconfirmed = self._unconfirmed, []
        failed_at: int | None = None
        error: ResponseError | None = None
        hole = False
        try:
            _transport(conn).resume_reading()
            for index in range(len(sent)):
                try:
                    await conn.read_response()
                except ResponseError as exc:
                    if record.already_written(exc):
                        continue
                    if failed_at is None:
                        failed_at, error = index, exc
                    continue
                if failed_at is not None:  # a write landed after one that failed
                    hole = True
        except _LOST:
            self._unconfirmed = sent
            return await self._lost()
        if hole or failed_at is not None or not keep:
            await self._release(conn)
        else:
            _transport(conn).pause_reading()
        if hole:
            assert error is not None
            raise RecordHole(error)
        if failed_at is None:
            return NOTHING
        return Resend(sent[failed_at:], error)

    async def _lost(self) -> Resend:
        await self._drop()
        return Resend(self._take_unconfirmed())

    async def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            self._held.count -= 1
            await conn.disconnect(nowait=True)
            await self._pool.release(conn)

    async def _release(self, conn: AbstractConnection) -> None:
        """Back to the pool, reading again, every reply read."""
        self._conn = None
        self._held.count -= 1
        await self._pool.release(conn)

    def _take_unconfirmed(self) -> list[Append]:
        again, self._unconfirmed = self._unconfirmed, []
        return again


def _transport(conn: AbstractConnection) -> asyncio.Transport:
    # redis-py keeps the connection's stream writer in `_writer` (pinned: redis<5.3); its transport
    # is where reading is paused. tests/worker/test_quiet_appends.py fails if that changes.
    writer = conn._writer
    assert writer is not None  # connected: callers check is_connected first
    return writer.transport  # type: ignore[return-value]
