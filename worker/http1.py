"""A lean pooled HTTP/1.1 client for provider calls: asyncio protocols plus the httptools parser.

Why not httpx here: on the hot path every job makes one upstream call, and the library clients
spend several times this module's CPU on each (`python -m bench.http_clients`, docs/benchmarks.md).
Provider APIs need little of HTTP: POST a body over keep-alive HTTP/1.1 (TLS or not, directly, through
an HTTP CONNECT or SOCKS5 proxy), read a sized or chunked answer, gzip or not, as a whole or as it
streams. This module does exactly that; redirects, cookies and HTTP/2 are out of scope.
tests/worker/test_http1_egress.py holds it and httpx (`http_client: httpx`) to one suite.

Retrying is never blind: a POST is resent only when it provably did not reach the server (see
`Client.post`); every other failure is an `HttpError` saying whether the request may have arrived.
"""

from __future__ import annotations

import asyncio
import select
import ssl
import time
import zlib
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import httptools

from worker.egress import Egress, HttpError, HttpTimeout, Timeouts
from worker.tunnel import basic_auth, open_tunnel

__all__ = ["Client", "HttpError", "HttpTimeout", "Response"]
_HAS_POLL = hasattr(select, "poll")  # not on Windows, where only what the loop has seen counts


class _NotSent(HttpError):
    """The kernel refused the request's bytes: nothing of it left this machine."""


@dataclass(slots=True)
class Response:
    status: int
    headers: dict[str, str]
    _conn: _Connection = field(repr=False)
    _exchange: int = field(default=0, repr=False)  # which request on `_conn` this answers

    async def read(self) -> bytes:
        chunks = [chunk async for chunk in self.iter_bytes()]
        return b"".join(chunks)

    async def iter_bytes(self) -> AsyncIterator[bytes]:
        async for chunk in self._conn.body(self._exchange):
            yield chunk

    async def aclose(self) -> None:
        """Stops reading this answer. One not read to its end has its connection aborted at once
        (directly, through a tunnel or a forwarding proxy alike: the socket under it is closed, so
        the provider, or the proxy in front of it, sees the hang-up and stops generating); a
        half-read connection never carries another request. Idempotent; a no-op once the body
        was read to its end (the connection is back in the pool then)."""
        self._conn.finish(self._exchange)


class _Connection(asyncio.Protocol):
    def __init__(self, pool: _Pool) -> None:
        self._pool = pool
        self._transport: asyncio.Transport | None = None
        self._fd = -1
        self._parser = httptools.HttpResponseParser(self)
        self._headers: dict[str, str] = {}
        self._status = 0
        self._head_done: asyncio.Future[None] | None = None
        self._chunks: deque[bytes] = deque()
        self._more = asyncio.Event()
        self._complete = False
        self._error: HttpError | None = None
        self._gunzip: zlib._Decompress | None = None
        self._active = False  # from writing a request until its answer is complete
        self._exchange = 0  # requests written on this connection, this one included
        self._open = 0  # the exchange whose slot is still held (0: none): finish() releases it once
        self._read_timeout = 0.0
        self._deadline: float | None = None
        self._total_binds = False
        self.reusable = False
        self.exchanges = 0
        self.keepalive = pool.keepalive_expiry
        self.idle_until = 0.0  # time.monotonic()

    # --- asyncio.Protocol --------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]  # uvloop's are duck-typed
        sock = transport.get_extra_info("socket")
        self._fd = sock.fileno() if sock is not None else -1

    def data_received(self, data: bytes) -> None:
        if not self._active:  # a server talking on an idle connection (an HTTP 408, say) is done with it
            self._close()
            return
        if self._error is not None:
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            if self._complete:  # bytes after the answer (see on_message_begin): the connection is done for
                self._close()
            else:
                self._fail(HttpError(f"malformed response from the provider ({exc})", request_sent=True))

    def eof_received(self) -> bool | None:
        self.reusable = False
        return None  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self.reusable = False
        if self._active and not self._complete:
            self._fail(HttpError("the provider closed the connection before answering in full "
                                 "(the request may have reached it)", request_sent=True))

    # --- httptools callbacks -----------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self._complete:  # a second message in the same read, like a 408 behind the answer: stop parsing
            raise ValueError("unexpected bytes after the answer")

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        self._status = self._parser.get_status_code()
        encoding = self._headers.get("content-encoding", "identity").lower()
        if encoding in ("gzip", "x-gzip"):
            self._gunzip = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif encoding != "identity":
            self._fail(HttpError(f"the provider answered in an unsupported content-encoding {encoding!r}",
                                 request_sent=True))
            return
        if self._head_done is not None and not self._head_done.done():
            self._head_done.set_result(None)

    def on_body(self, body: bytes) -> None:
        if self._error is not None:
            return
        if self._gunzip is not None:
            try:
                body = self._gunzip.decompress(body)
            except zlib.error:
                self._fail(HttpError("the provider's gzip answer is corrupt", request_sent=True))
                return
            if not body:
                return
        self._chunks.append(body)
        self._more.set()

    def on_message_complete(self) -> None:
        if self._error is not None:
            return
        if self._gunzip is not None and not self._gunzip.eof:
            self._fail(HttpError("the provider's gzip answer ended early", request_sent=True))
            return
        self._complete = True
        self._active = False
        self.exchanges += 1
        self.reusable = self._parser.should_keep_alive()
        self.keepalive = self._pool.keepalive_expiry
        announced = self._headers.get("keep-alive")
        if announced is not None:  # `timeout=5, max=100`: leave a second's margin before the server's close
            for part in announced.split(","):
                name, _, value = part.strip().partition("=")
                if name.lower() == "timeout" and value.isdigit():
                    self.keepalive = max(0.0, int(value) - 1.0)
        self._more.set()

    def _fail(self, exc: HttpError) -> None:
        if self._error is None:
            self._error = exc
        if self._head_done is not None and not self._head_done.done():
            self._head_done.set_exception(exc)
        self._more.set()
        self._close()

    def _close(self) -> None:
        self.reusable = False
        if self._transport is None:
            return
        if self._active and not self._complete:
            # an answer still coming: abort, not close (a TLS close would first wait for the
            # provider's close_notify while it keeps generating); the peer sees the hang-up now
            self._transport.abort()
        else:
            self._transport.close()

    def finish(self, exchange: int) -> None:
        """Ends `exchange` on this connection: a body not read to its end aborts the connection
        (see `Response.aclose`); then the pool gets its slot back. Only the first call for the
        exchange counts, so a late one (a generator closed after the connection was reused) can
        neither release a slot twice nor touch the next exchange."""
        if exchange != self._open:
            return
        self._open = 0
        if not self._complete:
            self._close()
        self._pool.release(self)

    # --- pooling -----------------------------------------------------------------------------

    def live(self, now: float) -> bool:
        """Whether an idle connection may carry the next request. Besides what the loop already
        saw (EOF, errors, expiry), asks the kernel: a socket with anything to read while idle holds
        a FIN, a reset or stray bytes that this loop has not processed yet, so the server is done
        with it and a request written there would be lost."""
        transport = self._transport
        if not self.reusable or transport is None or transport.is_closing() or now >= self.idle_until:
            return False
        if self._fd >= 0 and _HAS_POLL:
            poller = select.poll()
            poller.register(self._fd, select.POLLIN)
            if poller.poll(0):
                return False
        return True

    # --- one exchange ------------------------------------------------------------------------

    async def send(self, request: bytes, read_timeout: float, deadline: float | None) -> Response:
        assert self._transport is not None
        self._exchange += 1
        self._open = self._exchange
        self._headers = {}
        self._status = 0
        self._chunks.clear()
        self._more.clear()
        self._complete = False
        self._error = None
        self._gunzip = None
        self._read_timeout, self._deadline = read_timeout, deadline
        self._parser = httptools.HttpResponseParser(self)
        self._head_done = asyncio.get_running_loop().create_future()
        self._active = True
        self._transport.write(request)
        if self._transport.is_closing():  # the write failed in the kernel, synchronously: nothing was sent
            self._active = False
            raise _NotSent("the provider's connection was closed as the request was written (not sent)")
        try:
            # asyncio.timeout, not wait_for: wait_for wraps the await in a task of its own, a cost
            # paid here per request and below per body chunk.
            async with self._timer():
                await asyncio.shield(self._head_done)  # a timeout must not cancel the shared future
        except TimeoutError:
            raise self._timed_out("the provider did not answer in time") from None
        return Response(self._status, self._headers, self, self._exchange)

    def _timer(self) -> asyncio.Timeout:
        when = asyncio.get_running_loop().time() + self._read_timeout
        # Which limit binds is decided here, not by reading the clock when it fires: uvloop's clock
        # has millisecond steps, so a timer may fire a hair before its deadline by loop.time().
        self._total_binds = self._deadline is not None and self._deadline <= when
        return asyncio.timeout_at(self._deadline if self._total_binds else when)

    def _timed_out(self, silence: str) -> HttpError:
        total = "the provider's answer did not complete in time (total timeout)"
        error = HttpTimeout(total if self._total_binds else silence, request_sent=True)
        self._fail(error)
        return error

    async def body(self, exchange: int) -> AsyncIterator[bytes]:
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
                    async with self._timer():
                        await self._more.wait()
                except TimeoutError:
                    raise self._timed_out("the provider stopped sending in time") from None
        finally:
            self.finish(exchange)  # read to the end: back to the pool; cut short: aborted


class _Pool:
    def __init__(self, host: str, port: int, tls: ssl.SSLContext | None, egress: Egress, size: int) -> None:
        self._host, self._port, self._tls = host, port, tls
        self._proxy = egress.proxy
        self._connect_timeout = egress.timeouts.connect
        self.keepalive_expiry = egress.keepalive_expiry
        self._idle: deque[_Connection] = deque()
        self._slots = asyncio.Semaphore(size)

    async def acquire(self, deadline: float | None, *, fresh: bool = False) -> _Connection:
        try:
            if deadline is None:
                await self._slots.acquire()
            else:
                async with asyncio.timeout_at(deadline):
                    await self._slots.acquire()
        except TimeoutError:
            raise HttpTimeout("no free connection to the provider in time (total timeout)") from None
        now = time.monotonic()
        while self._idle and not fresh:
            conn = self._idle.pop()  # most recently used first
            if conn.live(now):
                return conn
            conn._close()
        try:
            return await self._connect(deadline)
        except BaseException:
            self._slots.release()
            raise

    async def _connect(self, deadline: float | None) -> _Connection:
        loop = asyncio.get_running_loop()
        when = loop.time() + self._connect_timeout
        proxy, tls = self._proxy, self._tls
        via = f" via the {proxy}" if proxy is not None else ""
        hostname = self._host if tls is not None else None
        try:
            async with asyncio.timeout_at(when if deadline is None else min(when, deadline)):
                if proxy is None or (proxy.scheme == "http" and tls is None):  # direct, or forwarded by the proxy
                    host, port = (self._host, self._port) if proxy is None else (proxy.host, proxy.port)
                    _, conn = await loop.create_connection(lambda: _Connection(self), host, port, ssl=tls,
                                                           server_hostname=hostname)
                else:
                    sock = await open_tunnel(loop, proxy, self._host, self._port)
                    _, conn = await loop.create_connection(lambda: _Connection(self), sock=sock, ssl=tls,
                                                           server_hostname=hostname)
        except TimeoutError:
            raise HttpTimeout(f"cannot connect to the provider in time (connect timeout{via})") from None
        except ssl.SSLCertVerificationError as exc:
            raise HttpError(f"the provider's TLS certificate was refused: {exc.verify_message}") from None
        except ssl.SSLError as exc:
            raise HttpError(f"TLS handshake with the provider failed ({exc.reason}{via})") from None
        except HttpError:
            raise
        except OSError as exc:
            raise HttpError(f"cannot connect to the provider ({type(exc).__name__}{via})") from None
        return conn

    def release(self, conn: _Connection) -> None:
        now = time.monotonic()
        if conn.reusable and conn._transport is not None and not conn._transport.is_closing():
            conn.idle_until = now + conn.keepalive
            self._idle.append(conn)
        else:
            conn._close()
        while self._idle and self._idle[0].idle_until <= now:  # the oldest idle ones expire first
            self._idle.popleft()._close()
        self._slots.release()

    def close(self) -> None:
        for conn in self._idle:
            conn._close()
        self._idle.clear()


class Client:
    """POSTs to one provider origin over pooled keep-alive connections."""

    def __init__(self, base_url: str, *, max_connections: int, egress: Egress | None = None) -> None:
        egress = egress or Egress()
        parts = urlsplit(base_url)
        tls = egress.tls_context() if parts.scheme == "https" else None
        port = parts.port or (443 if tls else 80)
        head = [b"host: " + parts.netloc.encode(), b"accept-encoding: gzip", b"connection: keep-alive"]
        self._target_prefix = ""
        if egress.proxy is not None and egress.proxy.scheme == "http" and tls is None:
            self._target_prefix = f"http://{parts.netloc}"  # forwarded by the proxy: absolute-form targets
            if egress.proxy.username is not None:
                head.append(f"proxy-authorization: {basic_auth(egress.proxy)}".encode())
        self._fixed_head = b"\r\n".join(head)
        self._pool = _Pool(parts.hostname or "", port, tls, egress, max_connections)
        self._timeouts: Timeouts = egress.timeouts

    def _request_bytes(self, url: str, headers: dict[str, str], body: bytes) -> bytes:
        parts = urlsplit(url)
        target = self._target_prefix + (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        head = [f"POST {target} HTTP/1.1".encode(), self._fixed_head, f"content-length: {len(body)}".encode()]
        head += [f"{k}: {v}".encode() for k, v in headers.items()]
        return b"\r\n".join(head) + b"\r\n\r\n" + body

    async def post(self, url: str, headers: dict[str, str], body: bytes) -> Response:
        """Sends the request; the caller must read or iterate the body (which frees the connection).

        The retry rule: a pooled connection is used only if `_Connection.live` (nothing closed it,
        not even in the kernel); if the kernel still refuses the request's bytes on one (the server's
        close raced our write), the request went nowhere and is written once more on a fresh
        connection. Once the kernel has taken the request, a failure is never retried here: the
        server may have it (`HttpError.request_sent`), and the worker's retry policy decides.
        """
        request = self._request_bytes(url, headers, body)
        total = self._timeouts.total
        deadline = None if total is None else asyncio.get_running_loop().time() + total
        for fresh in (False, True):
            conn = await self._pool.acquire(deadline, fresh=fresh)
            try:
                return await conn.send(request, self._timeouts.read, deadline)
            except _NotSent:
                conn.finish(conn._exchange)
                if fresh or conn.exchanges == 0:  # a new connection refusing bytes: nothing stale to blame
                    raise
            except BaseException:  # no answer yet (a timeout, a cancelled job): hang up on the provider
                conn.reusable = False
                conn.finish(conn._exchange)
                raise
        raise AssertionError("unreachable")

    async def aclose(self) -> None:
        self._pool.close()
