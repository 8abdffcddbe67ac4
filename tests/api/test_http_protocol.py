"""api/http_protocol.py: uvicorn's protocol, with one write per connection and event-loop turn.

Driven with uvicorn's real protocol and parser over a transport that records what reaches it,
so each test counts the writes (the syscalls) a response costs and checks their bytes.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from starlette.types import Receive, Scope, Send
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from api.http_protocol import CoalescingHttpToolsProtocol, CoalescingTransport

pytestmark = pytest.mark.anyio

REQUEST = b"GET / HTTP/1.1\r\nhost: x\r\n\r\n"


class RecordingTransport:
    """What the socket would have been asked to send, write by write."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.events: list[str] = []
        self.closing = False

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))
        self.events.append("write")

    def close(self) -> None:
        self.closing = True
        self.events.append("close")

    def abort(self) -> None:
        self.closing = True
        self.events.append("abort")

    def is_closing(self) -> bool:
        return self.closing

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 5000), "sockname": ("127.0.0.1", 8000)}.get(name, default)

    def get_write_buffer_size(self) -> int:
        return 0

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None: ...


def whole_answer(body: bytes, headers: list[tuple[bytes, bytes]] | None = None) -> Any:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", str(len(body)).encode()), *(headers or [])]})
        await send({"type": "http.response.body", "body": body})
    return app


async def serve(protocol_class: type[HttpToolsProtocol], app: Any, request: bytes = REQUEST,
                until: asyncio.Event | None = None) -> RecordingTransport:
    config = Config(app, lifespan="off", log_level="warning")
    protocol = protocol_class(config=config, server_state=ServerState(), app_state={})
    transport = RecordingTransport()
    protocol.connection_made(transport)  # type: ignore[arg-type]
    protocol.data_received(request)
    if until is not None:
        await until.wait()
    for _ in range(20):  # let the request's task run to its end, and the turn's flush after it
        await asyncio.sleep(0)
    protocol.connection_lost(None)
    return transport


async def test_a_whole_answer_leaves_in_one_write() -> None:
    app = whole_answer(b'{"ok":true}')
    plain = await serve(HttpToolsProtocol, app)
    joined = await serve(CoalescingHttpToolsProtocol, app)
    assert len(plain.writes) == 2  # what uvicorn alone costs: the head, then the body
    assert len(joined.writes) == 1
    assert joined.writes[0] == b"".join(plain.writes)
    assert joined.writes[0].startswith(b"HTTP/1.1 200 OK\r\n") and joined.writes[0].endswith(b'\r\n\r\n{"ok":true}')


async def test_a_stream_joins_its_head_and_first_frame_only() -> None:
    go_on = asyncio.Event()
    finished = asyncio.Event()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]})
        await send({"type": "http.response.body", "body": b"data: 1\n\n", "more_body": True})
        await go_on.wait()  # the next frame comes in a later turn
        await send({"type": "http.response.body", "body": b"data: 2\n\n", "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        finished.set()

    async def release_later() -> None:
        for _ in range(10):
            await asyncio.sleep(0)
        go_on.set()

    releasing = asyncio.create_task(release_later())
    transport = await serve(CoalescingHttpToolsProtocol, app, until=finished)
    await releasing
    head_and_first, *rest = transport.writes
    assert head_and_first.startswith(b"HTTP/1.1 200 OK\r\n") and head_and_first.endswith(b"data: 1\n\n\r\n")
    assert rest == [b"9\r\ndata: 2\n\n\r\n", b"0\r\n\r\n"]  # later writes go out as they come


async def test_a_close_sends_what_is_pending_first() -> None:
    transport = await serve(CoalescingHttpToolsProtocol, whole_answer(b"bye", [(b"connection", b"close")]))
    assert transport.events[:2] == ["write", "close"] and len(transport.writes) == 1
    assert transport.writes[0].endswith(b"\r\n\r\nbye")


async def test_only_a_head_waits_and_never_past_its_turn() -> None:
    inner = RecordingTransport()
    transport = CoalescingTransport(inner, asyncio.get_running_loop())  # type: ignore[arg-type]
    head = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\r\n"
    transport.write(head)
    assert inner.writes == []
    transport.write(b"data: 1\n\n")
    assert inner.writes == [head + b"data: 1\n\n"]  # joined, and sent before the turn ends
    transport.write(b"data: 2\n\n")
    assert inner.writes[-1] == b"data: 2\n\n"  # not held at all
    transport.write(head)  # a head with nothing after it in this turn ...
    await asyncio.sleep(0)
    assert inner.writes[-1] == head  # ... goes out when the turn ends
    assert len(inner.writes) == 3


async def test_abort_drops_what_is_pending_and_a_closed_peer_gets_nothing() -> None:
    inner = RecordingTransport()
    transport = CoalescingTransport(inner, asyncio.get_running_loop())  # type: ignore[arg-type]
    transport.write(b"HTTP/1.1 200 OK\r\n\r\n")  # held: never sent
    transport.abort()
    await asyncio.sleep(0)
    assert inner.events == ["abort"]

    gone = RecordingTransport()
    transport = CoalescingTransport(gone, asyncio.get_running_loop())  # type: ignore[arg-type]
    transport.write(b"HTTP/1.1 200 OK\r\n\r\n")
    gone.closing = True  # the client hung up within the turn
    await asyncio.sleep(0)
    assert gone.writes == []


async def test_a_held_head_counts_towards_the_write_buffer() -> None:
    transport = CoalescingTransport(RecordingTransport(), asyncio.get_running_loop())  # type: ignore[arg-type]
    transport.write(b"HTTP/1.1 204 No Content\r\n\r\n")
    assert transport.get_write_buffer_size() == len(b"HTTP/1.1 204 No Content\r\n\r\n")
