"""Loopback servers for the provider-client suite (tests/worker/test_http1_egress.py): an origin
(plain or TLS) that misbehaves on request, an HTTP proxy (CONNECT tunnels and plain forwarding) and
a SOCKS5 proxy. They run on an event loop of their own in a thread, so the loop under test never
runs server code, and a server can act while the client's loop is deliberately blocked.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import socket
import ssl
import struct
import threading
import zlib
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar
from urllib.parse import urlsplit

import trustme

T = TypeVar("T")
Streams = tuple[asyncio.StreamReader, asyncio.StreamWriter]


class ServerThread:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._servers: list[asyncio.Server] = []
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)

    def listen(self, serve: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
               tls: ssl.SSLContext | None = None) -> int:
        async def start() -> asyncio.Server:
            return await asyncio.start_server(serve, "127.0.0.1", 0, ssl=tls)

        server = self.run(start())
        self._servers.append(server)
        port: int = server.sockets[0].getsockname()[1]
        return port

    def set(self, event: asyncio.Event) -> None:
        self.loop.call_soon_threadsafe(event.set)

    def stop(self) -> None:
        async def close() -> None:
            for server in self._servers:
                server.close()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        self.run(close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
        self.loop.close()


def server_tls(ca: trustme.CA, *names: str, sni: list[str | None] | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(*names).configure_cert(context)
    if sni is not None:
        context.sni_callback = lambda _sock, name, _ctx: sni.append(name)  # type: ignore[assignment,misc,func-returns-value]
    return context


async def read_request(reader: asyncio.StreamReader) -> tuple[str, dict[str, str], bytes]:
    """(path, lower-cased headers, body) of one request; the path also for absolute-form targets."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
    path = urlsplit(lines[0].split(" ")[1]).path
    return path, headers, await reader.readexactly(int(headers.get("content-length", "0")))


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()


async def _splice(a: Streams, b: Streams) -> None:
    await asyncio.gather(_pipe(a[0], b[1]), _pipe(b[0], a[1]))


def _answer(body: bytes, *extra: bytes) -> bytes:
    head = [b"HTTP/1.1 200 OK", b"content-type: application/json", b"content-length: %d" % len(body), *extra]
    return b"\r\n".join(head) + b"\r\n\r\n" + body


class Origin:
    """A provider stand-in. What it does depends on the request's path:

    /json         answers `{"echo": <body length>}`, keeping the connection open
    /gzip         the same, gzip-encoded whole, if the request accepts gzip
    /gzip-stream  two SSE events in chunked gzip, the second held back until `release` is set
    /close-idle   answers, then (on `close_now`) closes the connection while it is idle (a FIN)
    /reset-idle   the same with a reset (RST)
    /408-idle     the same, sending an unasked-for 408 first
    /drop         reads the whole request, then closes without a word
    /silent       reads the request and never answers
    /stall-body   sends the head and half of the body, then nothing
    /drip         sends a 10,000-byte body a byte every 20 ms
    /endless      an SSE stream of one event every 20 ms until the client hangs up (sets `hung_up`)
    /hold         answers, then keeps the connection open without reading from it again
    /short-keepalive  answers with `keep-alive: timeout=1`
    `mute=True`: accepts connections and never reads or speaks (no TLS handshake either).
    """

    def __init__(self, net: ServerThread, tls: ssl.SSLContext | None = None, mute: bool = False) -> None:
        self.net = net
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        self.connections = 0
        self.gzipped = 0
        self.idle_closed = threading.Event()  # set once an -idle path has closed its connection
        self.hung_up = threading.Event()  # set once a client hung up on /endless
        self.release = asyncio.Event()
        self.close_now = asyncio.Event()
        self._mute = mute
        self.port = net.listen(self._serve, tls)

    def paths(self) -> list[str]:
        return [path for path, _, _ in self.requests]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            if self._mute:
                await asyncio.Event().wait()
            while await self._one(reader, writer):
                pass
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()

    async def _one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Serves one request; False once the connection is done."""
        path, headers, body = request = await read_request(reader)
        self.requests.append(request)
        echo = b'{"echo": %d}' % len(body)
        if path == "/gzip" and "gzip" in headers.get("accept-encoding", ""):
            self.gzipped += 1
            writer.write(_answer(gzip.compress(echo), b"content-encoding: gzip"))
        elif path == "/gzip-stream" and "gzip" in headers.get("accept-encoding", ""):
            self.gzipped += 1
            packer = zlib.compressobj(wbits=31)
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncontent-encoding: gzip\r\n"
                         b"transfer-encoding: chunked\r\n\r\n")
            first = packer.compress(b'data: {"n": 1}\n\n') + packer.flush(zlib.Z_SYNC_FLUSH)
            writer.write(b"%x\r\n%s\r\n" % (len(first), first))
            await writer.drain()
            await self.release.wait()  # the client must have the first event before the second exists
            last = packer.compress(b'data: {"n": 2}\n\n') + packer.flush()
            writer.write(b"%x\r\n%s\r\n0\r\n\r\n" % (len(last), last))
        elif path == "/drop":
            return False
        elif path == "/silent":
            await asyncio.Event().wait()
        elif path == "/stall-body":
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n" + b"x" * 50)
            await writer.drain()
            await asyncio.Event().wait()
        elif path == "/drip":
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 10000\r\n\r\n")
            for _ in range(10000):
                writer.write(b"x")
                await writer.drain()
                await asyncio.sleep(0.02)  # pacing the server's output, not synchronising the test
        elif path == "/endless":
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n")
            event = b'data: {"n": 1}\n\n'
            try:
                while True:
                    writer.write(b"%x\r\n%s\r\n" % (len(event), event))
                    await writer.drain()
                    await asyncio.sleep(0.02)  # pacing the server's output, not synchronising the test
            except ConnectionError:
                self.hung_up.set()
                return False
        elif path == "/short-keepalive":
            writer.write(_answer(echo, b"keep-alive: timeout=1"))
        else:
            writer.write(_answer(echo))
        await writer.drain()
        if path == "/hold":
            await asyncio.Event().wait()
        if path.endswith("-idle"):
            await self._close_idle(path, writer)
            return False
        return True

    async def _close_idle(self, path: str, writer: asyncio.StreamWriter) -> None:
        await self.close_now.wait()  # the test sets it once the client holds the connection idle
        if path == "/408-idle":
            writer.write(b"HTTP/1.1 408 Request Timeout\r\nconnection: close\r\ncontent-length: 0\r\n\r\n")
            await writer.drain()
        sock = writer.get_extra_info("socket")
        if path == "/reset-idle":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
        else:
            writer.close()
        await writer.wait_closed()
        self.idle_closed.set()


class HttpProxy:
    """CONNECT tunnels (for https origins) and absolute-form forwarding (for http ones). With
    `credentials`, anything without the matching Proxy-Authorization gets a 407."""

    def __init__(self, net: ServerThread, credentials: tuple[str, str] | None = None) -> None:
        self.seen: list[str] = []  # request lines
        self._expected = None
        if credentials is not None:
            self._expected = "Basic " + base64.b64encode(":".join(credentials).encode()).decode()
        self.port = net.listen(self._serve)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            line, *rest = head.decode("latin-1").split("\r\n")
            self.seen.append(line)
            headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in rest if h)}
            if self._expected is not None and headers.get("proxy-authorization") != self._expected:
                writer.write(b"HTTP/1.1 407 Proxy Authentication Required\r\ncontent-length: 0\r\n\r\n")
                await writer.drain()
                return
            method, target, _ = line.split(" ")
            if method == "CONNECT":
                host, port = target.rsplit(":", 1)
                upstream = await asyncio.open_connection(host.strip("[]"), int(port))
                writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            else:
                parts = urlsplit(target)
                upstream = await asyncio.open_connection(parts.hostname, parts.port or 80)
                upstream[1].write(head)  # origins take absolute-form targets (RFC 9112, 3.2.2)
            await _splice((reader, writer), upstream)
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            pass
        finally:
            writer.close()


class Socks5Proxy:
    """RFC 1928 CONNECT, with RFC 1929 username/password when `credentials` are set."""

    def __init__(self, net: ServerThread, credentials: tuple[str, str] | None = None) -> None:
        self.seen: list[tuple[str, int]] = []  # (host as the client sent it, port)
        self._credentials = credentials
        self.port = net.listen(self._serve)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            _, count = await reader.readexactly(2)
            methods = await reader.readexactly(count)
            if self._credentials is not None:
                if 2 not in methods:
                    writer.write(b"\x05\xff")
                    return
                writer.write(b"\x05\x02")
                _, size = await reader.readexactly(2)
                user = (await reader.readexactly(size)).decode()
                password = (await reader.readexactly((await reader.readexactly(1))[0])).decode()
                accepted = (user, password) == self._credentials
                writer.write(b"\x01\x00" if accepted else b"\x01\x01")
                if not accepted:
                    return
            else:
                writer.write(b"\x05\x00")
            _, _, _, kind = await reader.readexactly(4)
            if kind == 3:
                host = (await reader.readexactly((await reader.readexactly(1))[0])).decode()
            else:
                family = socket.AF_INET if kind == 1 else socket.AF_INET6
                host = socket.inet_ntop(family, await reader.readexactly(4 if kind == 1 else 16))
            port = int.from_bytes(await reader.readexactly(2), "big")
            self.seen.append((host, port))
            upstream = await asyncio.open_connection(host, port)
            writer.write(b"\x05\x00\x00\x01" + bytes(6))
            await _splice((reader, writer), upstream)
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            pass
        finally:
            writer.close()


class TlsTerminator:
    """Terminates TLS and pipes the plain bytes to 127.0.0.1:`target` (set before the first
    connection): a TLS front for a plain-HTTP server such as the mock provider."""

    def __init__(self, net: ServerThread, tls: ssl.SSLContext) -> None:
        self.target = 0
        self.connections = 0
        self.port = net.listen(self._serve, tls)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            await _splice((reader, writer), await asyncio.open_connection("127.0.0.1", self.target))
        except (ConnectionError, OSError):
            writer.close()
