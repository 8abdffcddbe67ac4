"""uvicorn's httptools protocol, sending a response's head and body as one write.

uvicorn writes a response's status line and headers, then its body, as two `transport.write`
calls, and uvloop sends each at once: two `send` syscalls and two TCP segments for every whole
answer, and for the head and first frame of every stream. On a small virtual machine a send that
wakes another process is among the dearest things a request does (docs/benchmarks.md, "Wake-ups
and system calls"); at max throughput that second send was the largest single item in the API's
profile. `CoalescingTransport` holds a response's head until the next write (the body, or a
stream's first frame), or the end of the event-loop turn if none comes first, and sends them
joined; every later write goes out at once.

Plugged in through uvicorn's own extension point (`http=` takes a protocol class); the protocol
itself is unchanged but for the transport it is handed.
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

# Past this much pending in one turn (a large body), write at once rather than hold it.
FLUSH_AT_BYTES = 256 * 1024


class CoalescingTransport(asyncio.Transport):
    """A transport that sends a response's head together with what is written next."""

    __slots__ = ("_inner", "_loop", "_pending", "_pending_bytes", "_scheduled")

    def __init__(self, inner: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self._inner = inner
        self._loop = loop
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        self._scheduled = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not data:
            return
        if not self._pending and bytes(data[:5]) == b"HTTP/" and len(data) < FLUSH_AT_BYTES:
            # a response's head: held for its body, which a whole answer writes in the same turn
            self._pending.append(bytes(data))
            self._pending_bytes = len(data)
            if not self._scheduled:
                self._scheduled = True
                self._loop.call_soon(self._flush_soon)
            return
        if self._pending:  # the body (or a stream's first frame) joins the held head: one write
            self._pending.append(bytes(data))
            self.flush()
            return
        self._inner.write(data)  # a later stream frame: nothing to join, no reason to wait

    def writelines(self, list_of_data: Any) -> None:
        for data in list_of_data:
            self.write(data)

    def _flush_soon(self) -> None:
        self._scheduled = False
        self.flush()

    def flush(self) -> None:
        """Sends what is pending now (one write). Dropped if the connection is already closing:
        the peer is gone, and the inner transport would only warn about writes after close."""
        if not self._pending:
            return
        pending, self._pending, self._pending_bytes = self._pending, [], 0
        if self._inner.is_closing():
            return
        self._inner.write(pending[0] if len(pending) == 1 else b"".join(pending))

    def close(self) -> None:
        self.flush()  # a response written just before a close (Connection: close, a 400) still goes out
        self._inner.close()

    def abort(self) -> None:
        self._pending, self._pending_bytes = [], 0
        self._inner.abort()

    def is_closing(self) -> bool:
        return self._inner.is_closing()

    def get_write_buffer_size(self) -> int:
        return self._pending_bytes + self._inner.get_write_buffer_size()

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self._inner.get_write_buffer_limits()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._inner.set_write_buffer_limits(high, low)

    def can_write_eof(self) -> bool:
        return self._inner.can_write_eof()

    def write_eof(self) -> None:
        self.flush()
        self._inner.write_eof()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._inner.get_extra_info(name, default)

    def pause_reading(self) -> None:
        self._inner.pause_reading()

    def resume_reading(self) -> None:
        self._inner.resume_reading()

    def is_reading(self) -> bool:
        return self._inner.is_reading()

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self.flush()
        self._inner.set_protocol(protocol)

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._inner.get_protocol()


class CoalescingHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol writing through a `CoalescingTransport`."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but offer the same methods
        super().connection_made(CoalescingTransport(cast(asyncio.Transport, transport), self.loop))
