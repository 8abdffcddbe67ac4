"""The lean HTTP/1.1 client against a raw loopback server: framing, reuse and failures."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import pytest

from tests.worker.egress_servers import Origin, ServerThread
from worker.egress import Egress, Timeouts
from worker.http1 import Client, HttpError

pytestmark = pytest.mark.anyio

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def read_request(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    length = next(int(line.split(b":")[1]) for line in lines if line.lower().startswith(b"content-length"))
    return head, await reader.readexactly(length)


class Server:
    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0
        self.requests: list[tuple[bytes, bytes]] = []

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            await self.handler(reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


async def start(handler_factory: Callable[[Server], Handler]) -> AsyncIterator[tuple[Server, str]]:
    server = Server(lambda r, w: asyncio.sleep(0))
    server.handler = handler_factory(server)
    listener = await asyncio.start_server(server._serve, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    try:
        yield server, f"http://127.0.0.1:{port}"
    finally:
        listener.close()


def keep_alive_json(server: Server) -> Handler:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            request = await read_request(reader)
            server.requests.append(request)
            body = b'{"echo": ' + str(len(request[1])).encode() + b"}"
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nx-ratelimit-remaining-requests: 7\r\n"
                         b"content-length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
            await writer.drain()
    return handle


async def test_posts_reuse_one_keep_alive_connection() -> None:
    async for server, url in start(keep_alive_json):
        client = Client(url, max_connections=4)
        for size in (1, 10, 100):
            reply = await client.post(f"{url}/v1/chat?x=1", {"authorization": "Bearer k"}, b"x" * size)
            assert reply.status == 200 and reply.headers["x-ratelimit-remaining-requests"] == "7"
            assert await reply.read() == b'{"echo": ' + str(size).encode() + b"}"
        assert server.connections == 1
        head, _ = server.requests[0]
        assert head.startswith(b"POST /v1/chat?x=1 HTTP/1.1\r\n") and b"authorization: Bearer k" in head
        await client.aclose()


async def test_chunked_stream_arrives_as_it_is_sent() -> None:
    release = asyncio.Event()

    def chunked(server: Server) -> Handler:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await read_request(reader)
            writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
            writer.write(b"6\r\ndata: \r\n")
            await writer.drain()
            await release.wait()  # the client must see the first chunk before the rest exists
            writer.write(b"3\r\nabc\r\n0\r\n\r\n")
            await writer.drain()
        return handle

    async for _, url in start(chunked):
        client = Client(url, max_connections=1)
        reply = await client.post(url + "/s", {}, b"{}")
        chunks = reply.iter_bytes()
        assert await anext(chunks) == b"data: "
        release.set()
        assert [c async for c in chunks] == [b"abc"]
        await client.aclose()


async def test_connection_closed_mid_body_is_an_error_and_not_reused() -> None:
    def truncating(server: Server) -> Handler:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await read_request(reader)
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\npartial")
            await writer.drain()
        return handle

    async for server, url in start(truncating):
        client = Client(url, max_connections=1)
        reply = await client.post(url, {}, b"{}")
        with pytest.raises(HttpError):
            await reply.read()
        with pytest.raises(HttpError):  # a fresh connection, which is truncated again
            await (await client.post(url, {}, b"{}")).read()
        assert server.connections == 2
        await client.aclose()


async def test_silence_times_out() -> None:
    def silent(server: Server) -> Handler:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await read_request(reader)
            await asyncio.Event().wait()
        return handle

    async for _, url in start(silent):
        client = Client(url, max_connections=1, egress=Egress(Timeouts(read=0.2)))
        with pytest.raises(HttpError, match="in time"):
            await client.post(url, {}, b"{}")
        await client.aclose()


async def test_refused_connection_is_an_error_and_frees_the_slot() -> None:
    client = Client("http://127.0.0.1:1", max_connections=1, egress=Egress(Timeouts(connect=1)))
    for _ in range(2):  # a leaked slot would make the second attempt hang
        with pytest.raises(HttpError, match="cannot connect"):
            await client.post("http://127.0.0.1:1/x", {}, b"{}")


# --- built-in client only: its retry rule and keep-alive expiry, on real sockets -------------------

@pytest.fixture
def net() -> Iterator[ServerThread]:
    thread = ServerThread()
    yield thread
    thread.stop()


async def test_a_request_the_kernel_refused_is_written_once_more_on_a_fresh_connection(net: ServerThread) -> None:
    origin = Origin(net)
    url = f"http://127.0.0.1:{origin.port}"
    client = Client(url, max_connections=2)
    assert await (await client.post(url + "/hold", {}, b"{}")).read() == b'{"echo": 2}'
    # Make the idle connection refuse writes in the kernel while it still looks alive (the server
    # holds it open and sends nothing): what a close racing our write looks like, made certain.
    idle = client._pool._idle[0]._transport
    assert idle is not None
    with socket.socket(fileno=os.dup(idle.get_extra_info("socket").fileno())) as same:
        same.shutdown(socket.SHUT_WR)
    assert await (await client.post(url + "/json", {}, b"once")).read() == b'{"echo": 4}'
    assert origin.paths() == ["/hold", "/json"] and origin.connections == 2
    await client.aclose()


async def test_a_servers_keep_alive_timeout_shortens_reuse(net: ServerThread) -> None:
    origin = Origin(net)
    url = f"http://127.0.0.1:{origin.port}"
    client = Client(url, max_connections=2)
    for _ in range(2):  # `keep-alive: timeout=1`: reuse would race the server's close, so none
        assert await (await client.post(url + "/short-keepalive", {}, b"{}")).read() == b'{"echo": 2}'
    for _ in range(2):
        assert await (await client.post(url + "/json", {}, b"{}")).read() == b'{"echo": 2}'
    assert origin.connections == 3
    await client.aclose()
