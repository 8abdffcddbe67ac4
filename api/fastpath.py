"""A direct line to the inference handlers, in front of FastAPI.

Profiling showed FastAPI's router, dependency solver and middleware stack costing about a third
of the API's CPU per request, more than our own handler. The inference POST routes need none of
it: they read the raw body, authenticate and answer in their own protocol. This ASGI wrapper
sends exactly those requests straight to the same handler functions the FastAPI routes use and
passes everything else (health, metrics, model lists, lifespan) to FastAPI unchanged.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

log = logging.getLogger("sluice.api")

Handler = Callable[[Request], Awaitable[Response]]


class FastPath:
    def __init__(self, app: FastAPI, exact: dict[str, Handler], prefixed: list[tuple[str, Handler]]) -> None:
        self.app = app
        self._exact = exact
        self._prefixed = prefixed

    def _handler(self, path: str) -> Handler | None:
        handler = self._exact.get(path)
        if handler is None:
            for prefix, candidate in self._prefixed:
                if path.startswith(prefix):
                    return candidate
        return handler

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            handler = self._handler(scope["path"])
            if handler is not None:
                scope["app"] = self.app  # handlers reach app.state through the request
                try:
                    response = await handler(Request(scope, receive))
                except Exception:
                    log.exception("unhandled error", extra={"path": scope["path"]})
                    response = Response(b'{"error":{"message":"Internal error.","type":"server_error"}}', 500,
                                        media_type="application/json")
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
