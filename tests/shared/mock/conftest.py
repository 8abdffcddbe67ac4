"""Fixtures for the mock provider's tests: an in-process client, a real uvicorn server, SSE parsing."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import orjson
import pytest
import uvicorn

from shared.mock import MockSettings, create_app
from shared.mock.app import MockApp
from shared.protocols.sse import SseFrame, SseParser


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@contextlib.asynccontextmanager
async def asgi_client(
    settings: MockSettings | None = None,
) -> AsyncIterator[tuple[httpx.AsyncClient, MockApp]]:
    app = create_app(settings or MockSettings())
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://mock") as client:
        yield client, app


@pytest.fixture
def client_for() -> Callable[..., Any]:
    """`async with client_for(MockSettings(...)) as (client, app):` an httpx client wired to the app."""
    return asgi_client


@contextlib.contextmanager
def _live(settings: MockSettings) -> Iterator[str]:
    # Bind before the thread starts: connections queue in the backlog until uvicorn accepts them,
    # so no readiness polling is needed.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        create_app(settings), http="httptools", log_level="warning", access_log=False, lifespan="on"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


@pytest.fixture
def live_server() -> Callable[[MockSettings], contextlib.AbstractContextManager[str]]:
    """`with live_server(MockSettings(...)) as base_url:` a real uvicorn server on 127.0.0.1."""
    return _live


def sse_frames(body: bytes) -> list[SseFrame]:
    parser = SseParser()
    return parser.feed(body) + parser.finish()


@pytest.fixture
def frames() -> Callable[[bytes], list[SseFrame]]:
    return sse_frames


@pytest.fixture
def data_objects() -> Callable[[bytes], list[Any]]:
    """The JSON of every `data:` frame, with OpenAI's `[DONE]` kept as the string "[DONE]"."""

    def parse(body: bytes) -> list[Any]:
        return [f.data.decode() if f.data == b"[DONE]" else orjson.loads(f.data) for f in sse_frames(body)]

    return parse
