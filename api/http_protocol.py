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


class CoalescingTransport(asyncio.Transport):
    """A transport that sends a response's head together with what is written next."""

    __slots__ = ("_head", "_inner", "_loop")

    def __init__(self, inner: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self._inner = inner
        self._loop = loop
        self._head: bytes | None = None  # a response's status line and headers, held

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not data:
            return
        if self._head is not None:  # the body (or a stream's first frame) joins the head: one write
            head, self._head = self._head, None
            self._inner.write(head + bytes(data))
        elif bytes(data[:5]) == b"HTTP/":
            # a response's head: held for its body, which a whole answer writes in the same turn
            self._head = bytes(data)
            self._loop.call_soon(self.flush)
        else:
            self._inner.write(data)  # a later stream frame: nothing to join, no reason to wait

    def writelines(self, list_of_data: Any) -> None:
        for data in list_of_data:
            self.write(data)

    def flush(self) -> None:
        """Sends a head still held (nothing followed it this turn). Dropped if the connection is
        already closing: the peer is gone, and the inner transport would only warn about it."""
        head, self._head = self._head, None
        if head is not None and not self._inner.is_closing():
            self._inner.write(head)

    def close(self) -> None:
        self.flush()  # a response written just before a close (Connection: close, a 400) still goes out
        self._inner.close()

    def abort(self) -> None:
        self._head = None
        self._inner.abort()

    def is_closing(self) -> bool:
        return self._inner.is_closing()

    def get_write_buffer_size(self) -> int:
        return len(self._head or b"") + self._inner.get_write_buffer_size()

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
