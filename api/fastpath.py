"""A direct line to the inference handlers, in front of FastAPI.

Profiling showed FastAPI's router, dependency solver and middleware stack costing about a third
of the API's CPU per request, more than our own handler. The inference POST routes need none of
it: they read the raw body, authenticate and answer in their own protocol. This ASGI wrapper
sends exactly those requests (the route table, api/routes/table.py) straight to their
handlers and passes everything else (health, metrics, model lists, lifespan) to FastAPI unchanged.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from fastapi import FastAPI
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from api.routes.table import Handler, InferenceRoute

log = logging.getLogger("sluice.api")


class FastPath:
    def __init__(self, app: FastAPI, routes: Iterable[InferenceRoute]) -> None:
        self.app = app
        self._exact: dict[str, Handler] = {}
        self._prefixed: list[tuple[str, Handler]] = []
        for route in routes:
            if route.prefix:
                self._prefixed.append((route.path, route.handler))
            else:
                self._exact[route.path] = route.handler

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
                except ClientDisconnect:
                    return  # the client left before its body was read: nobody to answer, nothing queued
                except Exception:
                    log.exception("unhandled error", extra={"path": scope["path"]})
                    response = Response(b'{"error":{"message":"Internal error.","type":"server_error"}}', 500,
                                        media_type="application/json")
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
