"""Fixtures for the mock provider's tests: an in-process client and SSE parsing (a real server:
`live_mock`, tests/conftest.py)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import orjson
import pytest

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
