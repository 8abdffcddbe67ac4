"""The mock's ASGI app: a dict lookup routes each request to its dialect or a control endpoint.

Control endpoints (no auth, not counted in stats):
    GET  /_stats   counters since start or the last reset
    POST /_reset   zero the counters and refill the rate-limit buckets
    GET  /_config  the current settings;  POST /_config {field: value, ...} changes them live
                   (fault injection too: fail_next, fail_status, truncate_after_chunks,
                   truncate_drop, truncate_count; see settings.py)

`/_stats` counts `closed_early`: answers whose client hung up before they were complete (during
the latency, or mid-way through a paced stream): the proof that a cancelled call was cut off.
"""

from __future__ import annotations

import msgspec
import orjson

from shared.mock import anthropic, embeddings, gemini, openai
from shared.mock.core import (
    MockError,
    MockState,
    Receive,
    Request,
    Scope,
    Send,
    counted,
    load_object,
    send_body,
    send_json,
    serve,
)
from shared.mock.mistral import MistralDialect
from shared.mock.settings import MockSettings, update_settings

_OPENAI = openai.OpenAIDialect()
_ANTHROPIC = anthropic.AnthropicDialect()
_GEMINI = gemini.GeminiDialect()
_GEMINI_ARRAY = gemini.GeminiArrayDialect()
_MISTRAL = MistralDialect()

_GENERATION = {
    "/v1/chat/completions": _OPENAI,
    "/v1/messages": _ANTHROPIC,
    "/mistral/v1/chat/completions": _MISTRAL,
}


class MockApp:
    """An ASGI app; `state` (settings, limits, stats) is exposed for tests and embedders."""

    def __init__(self, settings: MockSettings) -> None:
        self.state = MockState(settings)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await _http(self.state, scope, receive, send)
        elif kind == "lifespan":
            await _lifespan(receive, send)


def create_app(settings: MockSettings) -> MockApp:
    return MockApp(settings)


async def _http(state: MockState, scope: Scope, receive: Receive, send: Send) -> None:
    path: str = scope["path"]
    method: str = scope["method"]
    if (embedder := embeddings.dialect_for(path, method)) is not None:
        await counted(state, embeddings.exchange(embedder, state, Request(scope), receive, send))
        return
    dialect = _GENERATION.get(path)
    if dialect is not None:
        if method != "POST":
            await _not_found(send, 405, "Method not allowed.")
            return
        await serve(dialect, state, scope, receive, send)
        return
    gemini_route = gemini.split_path(path)
    if gemini_route is not None:
        if method != "POST" or gemini_route[1] not in gemini.METHODS:
            error = MockError(404, f"Method {gemini_route[1]!r} is not served by the mock.")
            await send_body(send, 404, _GEMINI.error_body(error), [])
            return
        stream_array = gemini_route[1] == "streamGenerateContent" and b"alt=sse" not in scope.get("query_string", b"")
        await serve(_GEMINI_ARRAY if stream_array else _GEMINI, state, scope, receive, send)
        return
    if method == "GET":
        if path in ("/v1/models", "/mistral/v1/models"):
            anthropic_shape = any(name == b"anthropic-version" for name, _ in scope["headers"])
            await send_body(send, 200, anthropic.models_body() if anthropic_shape else openai.models_body(), [])
            return
        if path == "/v1beta/models":
            await send_body(send, 200, gemini.models_body(), [])
            return
        if path == "/_stats":
            await send_json(send, 200, state.stats.as_json())
            return
        if path == "/_config":
            await send_json(send, 200, msgspec.to_builtins(state.settings))
            return
    elif method == "POST":
        if path == "/_reset":
            state.stats.reset()
            state.limits.reset()
            await send_json(send, 200, {"ok": True})
            return
        if path == "/_config":
            await _configure(state, receive, send)
            return
    await _not_found(send, 404, f"No route for {method} {path}.")


async def _configure(state: MockState, receive: Receive, send: Send) -> None:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    try:
        update_settings(state.settings, load_object(b"".join(chunks)))
    except MockError as exc:
        await send_json(send, 400, {"error": exc.message})
        return
    except msgspec.ValidationError as exc:
        await send_json(send, 400, {"error": str(exc)})
        return
    await send_json(send, 200, msgspec.to_builtins(state.settings))


async def _not_found(send: Send, status: int, message: str) -> None:
    await send_body(send, status, orjson.dumps({"error": {"message": message, "type": "invalid_request_error"}}), [])


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
