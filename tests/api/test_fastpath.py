"""The fast path in front of FastAPI: what it does when a handler cannot answer."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import Response

from api.fastpath import FastPath
from api.routes.table import InferenceRoute

pytestmark = pytest.mark.anyio


async def reads_body(request: Request) -> Response:
    return Response(await request.body())


async def fails(request: Request) -> Response:
    raise RuntimeError("boom")


async def call(app: FastPath, path: str, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return messages.pop(0)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": path, "headers": [], "query_string": b""}
    await app(scope, receive, send)
    return sent


async def test_a_client_that_leaves_mid_body_is_dropped_quietly(caplog: pytest.LogCaptureFixture) -> None:
    app = FastPath(FastAPI(), [InferenceRoute("/v1/chat/completions", reads_body)])
    with caplog.at_level(logging.INFO, logger="sluice.api"):
        sent = await call(app, "/v1/chat/completions",
                          [{"type": "http.request", "body": b"{", "more_body": True}, {"type": "http.disconnect"}])
    assert sent == []  # nobody to answer
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


async def test_a_handler_that_raises_is_a_logged_500(caplog: pytest.LogCaptureFixture) -> None:
    app = FastPath(FastAPI(), [InferenceRoute("/v1/chat/completions", fails)])
    with caplog.at_level(logging.INFO, logger="sluice.api"):
        sent = await call(app, "/v1/chat/completions", [{"type": "http.request", "body": b"{}"}])
    assert sent[0]["status"] == 500
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == ["unhandled error"]
