"""A lean pooled HTTP/1.1 client for provider calls: asyncio protocols plus the httptools parser.

Why not httpx here: on the hot path every job makes one upstream call, and httpx spends about
3 ms of CPU on each (measured: bench/README, `docs/benchmarks.md`), more than everything else a
job costs together. Provider APIs need very little of HTTP: POST a JSON body over keep-alive
HTTP/1.1 (TLS or not), read a Content-Length or chunked answer, as a whole or as it streams.
This module does exactly that; anything else (redirects, proxies, cookies, HTTP/2) is out of
scope, and `sluice` falls back to httpx when an account sets `http_client: httpx`.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import httptools


class HttpError(Exception):
    """The connection failed or timed out (the provider never answered in full)."""


@dataclass(slots=True)
class Response:
    status: int
    headers: dict[str, str]
    _conn: _Connection = field(repr=False)

    async def read(self) -> bytes:
        chunks = [chunk async for chunk in self.iter_bytes()]
        return b"".join(chunks)

    async def iter_bytes(self) -> AsyncIterator[bytes]:
        async for chunk in self._conn.body():
            yield chunk


class _Connection(asyncio.Protocol):
    def __init__(self, pool: _Pool) -> None:
        self._pool = pool
        self._transport: asyncio.Transport | None = None
        self._parser = httptools.HttpResponseParser(self)
        self._headers: dict[str, str] = {}
        self._header_name = b""
        self._status = 0
        self._head_done: asyncio.Future[None] | None = None
        self._chunks: deque[bytes] = deque()
        self._more = asyncio.Event()
        self._complete = False
        self._error: BaseException | None = None
        self.reusable = False

    # --- asyncio.Protocol --------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]  # uvloop's are duck-typed

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(HttpError(f"malformed response from the provider ({exc})"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.reusable = False
        if not self._complete:
            self._fail(HttpError("the provider closed the connection"))

    # --- httptools callbacks -----------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        self._status = self._parser.get_status_code()
        if self._head_done is not None and not self._head_done.done():
            self._head_done.set_result(None)

    def on_body(self, body: bytes) -> None:
        self._chunks.append(body)
        self._more.set()

    def on_message_complete(self) -> None:
        self._complete = True
        self.reusable = self._parser.should_keep_alive()
        self._more.set()

    def _fail(self, exc: BaseException) -> None:
        self._error = exc
        if self._head_done is not None and not self._head_done.done():
            self._head_done.set_exception(exc)
        self._more.set()
        if self._transport is not None:
            self._transport.close()

    # --- one exchange ------------------------------------------------------------------------

    async def send(self, request: bytes, seconds: float) -> Response:
        assert self._transport is not None
        self._headers = {}
        self._status = 0
        self._chunks.clear()
        self._more.clear()
        self._complete = False
        self._error = None
        self._timeout = seconds
        self._parser = httptools.HttpResponseParser(self)
        self._head_done = asyncio.get_running_loop().create_future()
        self._transport.write(request)
        try:
            # asyncio.timeout, not wait_for: wait_for wraps the await in a task of its own, a cost
            # paid here per request and below per body chunk.
            async with asyncio.timeout(seconds):
                await asyncio.shield(self._head_done)  # a timeout must not cancel the shared future
        except TimeoutError:
            self._fail(HttpError("the provider did not answer in time"))
            raise HttpError("the provider did not answer in time") from None
        return Response(self._status, self._headers, self)

    async def body(self) -> AsyncIterator[bytes]:
        try:
            while True:
                while self._chunks:
                    yield self._chunks.popleft()
                if self._error is not None:
                    raise self._error
                if self._complete:
                    return
                self._more.clear()
                try:
                    async with asyncio.timeout(self._timeout):
                        await self._more.wait()
                except TimeoutError:
                    self._fail(HttpError("the provider stopped sending"))
                    raise HttpError("the provider stopped sending") from None
        finally:
            self._pool.release(self)


class _Pool:
    def __init__(self, host: str, port: int, tls: ssl.SSLContext | None, size: int) -> None:
        self._host, self._port, self._tls = host, port, tls
        self._idle: list[_Connection] = []
        self._slots = asyncio.Semaphore(size)

    async def acquire(self, connect_timeout: float) -> _Connection:
        await self._slots.acquire()
        while self._idle:
            conn = self._idle.pop()
            if conn.reusable and conn._transport is not None and not conn._transport.is_closing():
                return conn
        try:
            loop = asyncio.get_running_loop()
            _, conn = await asyncio.wait_for(
                loop.create_connection(lambda: _Connection(self), self._host, self._port, ssl=self._tls,
                                       server_hostname=self._host if self._tls else None),
                connect_timeout)
        except (OSError, TimeoutError) as exc:
            self._slots.release()
            raise HttpError(f"cannot connect to the provider ({type(exc).__name__})") from None
        return conn

    def release(self, conn: _Connection) -> None:
        if conn.reusable and conn._transport is not None and not conn._transport.is_closing():
            self._idle.append(conn)
        elif conn._transport is not None:
            conn._transport.close()
        self._slots.release()

    def close(self) -> None:
        for conn in self._idle:
            if conn._transport is not None:
                conn._transport.close()
        self._idle.clear()


class Client:
    """POSTs to one provider origin over pooled keep-alive connections."""

    def __init__(self, base_url: str, *, max_connections: int, timeout: float, connect_timeout: float = 10.0) -> None:
        parts = urlsplit(base_url)
        tls = ssl.create_default_context() if parts.scheme == "https" else None
        port = parts.port or (443 if tls else 80)
        self._host_header = parts.netloc.encode()
        self._pool = _Pool(parts.hostname or "", port, tls, max_connections)
        self._timeout = timeout
        self._connect_timeout = connect_timeout

    def _request_bytes(self, url: str, headers: dict[str, str], body: bytes) -> bytes:
        parts = urlsplit(url)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        head = [f"POST {target} HTTP/1.1".encode(), b"host: " + self._host_header,
                f"content-length: {len(body)}".encode(), b"connection: keep-alive"]
        head += [f"{k}: {v}".encode() for k, v in headers.items()]
        return b"\r\n".join(head) + b"\r\n\r\n" + body

    async def post(self, url: str, headers: dict[str, str], body: bytes) -> Response:
        """Sends the request; the caller must read or iterate the body (which frees the connection)."""
        conn = await self._pool.acquire(self._connect_timeout)
        try:
            return await conn.send(self._request_bytes(url, headers, body), self._timeout)
        except BaseException:
            conn.reusable = False
            self._pool.release(conn)
            raise

    async def aclose(self) -> None:
        self._pool.close()
