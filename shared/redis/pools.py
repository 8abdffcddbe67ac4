"""Connection pools whose checkout does not wait for a loop turn.

redis-py's asyncio pool checks every connection it hands out by trying to read from it under a
zero timeout (`can_read_destructive`): a future, a timer and one more turn of the event loop for
every command sent (docs/benchmarks.md, "Wake-ups and system calls": `python -m bench.micro
command` against `command-library`). Every request pays it at least twice, and a streamed answer
once per event.

What that probe guards against cannot happen here: a reply is only ever left unread when a read
ends early, and redis-py closes the connection whenever that happens (`read_response`
disconnects on any exception, cancellation included), so an open pooled connection has nothing
unread. A connection the server closed while it sat in the pool is still replaced at checkout,
without waiting: its reader has seen the end of the stream, or holds bytes nobody asked for.
"""

from __future__ import annotations

import asyncio

import redis.asyncio as aioredis
from redis.asyncio.connection import AbstractConnection


def _stale(connection: AbstractConnection) -> bool:
    """True when the connection cannot be handed out as it is: what it has read so far (nothing
    is waited for) says the server closed it, or it holds data that answers no command."""
    reader = getattr(connection, "_reader", None)
    if not isinstance(reader, asyncio.StreamReader):
        return False  # not connected yet: connect() makes it
    return reader.at_eof() or bool(getattr(reader, "_buffer", b""))


async def _ensure(connection: AbstractConnection) -> None:
    if _stale(connection):
        await connection.disconnect()
    await connection.connect()  # type: ignore[no-untyped-call]


class LeanConnectionPool(aioredis.ConnectionPool):
    """`ConnectionPool` without the waiting probe at checkout (see the module docstring)."""

    async def ensure_connection(self, connection: AbstractConnection) -> None:
        await _ensure(connection)


class LeanBlockingConnectionPool(aioredis.BlockingConnectionPool):
    """`BlockingConnectionPool` without the waiting probe at checkout (see the module docstring)."""

    async def ensure_connection(self, connection: AbstractConnection) -> None:
        await _ensure(connection)
