"""The request cycle every dialect shares, on raw ASGI (no framework on the hot path).

    auth -> x-mock-fail -> parse and validate -> rate limits -> latency -> answer (JSON or SSE)

A dialect only supplies the parts that differ: how it authenticates, how it reads a body into a
`Conversation`, and how it renders answers, errors and rate-limit headers. The embeddings
endpoints (shared/mock/embeddings.py) run the same steps: `precheck`, `admit`, and `counted`
around the exchange.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import orjson

from shared.mock.limits import Admission, Limits, RateLimited, Stats, go_duration
from shared.mock.settings import MockSettings
from shared.mock.text import Conversation, Plan, plan, response_id

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Headers = list[tuple[bytes, bytes]]

JSON_TYPE = (b"content-type", b"application/json")
SSE_HEADERS: Headers = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
]


class MockError(Exception):
    """An error answer; the dialect renders it unless `body` is given verbatim."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        kind: str = "",
        param: str | None = None,
        code: str | None = None,
        body: bytes | None = None,
        retry_after: float | None = None,
        headers: Headers | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.kind = kind  # "authentication", "requests"/"tokens" (429), "forced" or dialect-specific
        self.param = param
        self.code = code
        self.body = body
        self.retry_after = retry_after
        self.headers = headers or []


class ClientGone(Exception):
    """The client hung up before its request was read."""


class Request:
    __slots__ = ("_query", "headers", "path", "scope")

    def __init__(self, scope: Scope) -> None:
        self.scope = scope
        self.path: str = scope["path"]
        self.headers: dict[bytes, bytes] = dict(scope["headers"])
        self._query: dict[str, list[str]] | None = None

    def header(self, name: bytes) -> str | None:
        value = self.headers.get(name)
        return None if value is None else value.decode("latin-1")

    def query(self, name: str) -> str | None:
        if self._query is None:
            self._query = parse_qs(self.scope.get("query_string", b"").decode("latin-1"))
        values = self._query.get(name)
        return values[0] if values else None


@dataclass(slots=True)
class Stream:
    head: list[bytes]  # sent with the first chunk
    chunks: list[bytes]  # paced by tokens_per_second
    tail: list[bytes]  # sent right after the last chunk
    headers: Headers = field(default_factory=lambda: SSE_HEADERS)


class Dialect:
    request_id_header: bytes | None = None
    retry_headers = True  # send retry-after / retry-after-ms on 429

    def authenticate(self, req: Request, settings: MockSettings) -> None:
        raise NotImplementedError

    def conversation(self, req: Request, body: dict[str, Any]) -> Conversation:
        raise NotImplementedError

    def call_id(self, raw: bytes) -> str:
        raise NotImplementedError

    def error_body(self, err: MockError) -> bytes:
        raise NotImplementedError

    def response(self, plan: Plan) -> bytes:
        raise NotImplementedError

    def stream(self, plan: Plan) -> Stream:
        raise NotImplementedError

    def limit_headers(self, admission: Admission) -> Headers:
        return openai_limit_headers(admission)


def openai_limit_headers(admission: Admission) -> Headers:
    headers: Headers = []
    for name, state in (("requests", admission.requests), ("tokens", admission.tokens)):
        if state is not None:
            headers.append((b"x-ratelimit-limit-" + name.encode(), str(state.limit).encode()))
            headers.append((b"x-ratelimit-remaining-" + name.encode(), str(state.remaining).encode()))
            headers.append((b"x-ratelimit-reset-" + name.encode(), go_duration(state.reset).encode()))
    return headers


def bearer_auth(req: Request, settings: MockSettings) -> None:
    if settings.api_key is None:
        return
    given = req.header(b"authorization")
    if given is None:
        raise MockError(401, "Missing bearer authentication in header.", kind="authentication")
    if given != "Bearer " + settings.api_key:
        raise MockError(401, "Incorrect API key provided.", kind="authentication", code="invalid_api_key")


@dataclass(slots=True)
class MockState:
    settings: MockSettings
    limits: Limits = field(default_factory=Limits)
    stats: Stats = field(default_factory=Stats)


def load_object(raw: bytes) -> dict[str, Any]:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise MockError(400, "The request body is not valid JSON.", kind="invalid_json") from None
    if not isinstance(body, dict):
        raise MockError(400, "The request body must be a JSON object.", kind="invalid_json")
    return body


async def serve(dialect: Dialect, state: MockState, scope: Scope, receive: Receive, send: Send) -> None:
    """One chat exchange, counted in the stats."""
    await counted(state, _cycle(dialect, state, Request(scope), receive, send))


async def counted(state: MockState, exchange: Awaitable[int]) -> None:
    """Runs one exchange (chat, or embeddings in shared/mock/embeddings.py) and counts it in the
    stats by the status it answered, 500 when it raised."""
    state.stats.begin()
    status = 500
    try:
        status = await exchange
    finally:
        state.stats.end(status)


async def precheck(dialect: Dialect, settings: MockSettings, req: Request) -> float:
    """What every endpoint does before reading the body: the dialect's auth, the per-request
    latency override and a failure forced by `x-mock-fail`. Returns the latency to apply, in ms.
    Raises MockError."""
    dialect.authenticate(req, settings)
    latency = settings.latency_ms
    override = req.header(b"x-mock-latency-ms")
    if override is not None:
        latency = _number(override, latency)
    fail = req.header(b"x-mock-fail")
    if fail is not None and (code := fail_status(fail)) is not None:
        await pause(latency)
        raise MockError(code, f"Mock failure requested by x-mock-fail: {code}.", kind="forced",
                        retry_after=1.0 if code == 429 else None)
    if settings.fail_next > 0:  # fault injection through POST /_config (docs/reliability.md)
        settings.fail_next -= 1
        await pause(latency)
        code = settings.fail_status
        raise MockError(code, f"Mock failure injected by fail_next: {code}.", kind="forced",
                        retry_after=1.0 if code == 429 else None)
    return latency


def admit(dialect: Dialect, state: MockState, cost: int) -> Admission:
    """The provider's own limits for a call of `cost` tokens; over them, the dialect's 429."""
    try:
        return state.limits.admit(state.settings, cost)
    except RateLimited as exc:
        raise MockError(
            429,
            f"Rate limit reached for {exc.which} per minute. Please try again in {go_duration(exc.retry_after)}.",
            kind=exc.which,
            code="rate_limit_exceeded",
            retry_after=exc.retry_after,
            headers=dialect.limit_headers(exc.admission),
        ) from None


async def _cycle(dialect: Dialect, state: MockState, req: Request, receive: Receive, send: Send) -> int:
    settings = state.settings
    base: Headers = []
    if dialect.request_id_header is not None:
        base.append((dialect.request_id_header, response_id("req_").encode()))
    try:
        latency = await precheck(dialect, settings, req)
        raw = await read_body(receive)
        conv = dialect.conversation(req, load_object(raw))
        answer = plan(
            conv,
            output_tokens=settings.output_tokens,
            chunk_tokens=settings.chunk_tokens,
            call_id=lambda: dialect.call_id(raw),
            tool_name=settings.tool_name,
            tool_arguments=settings.tool_arguments,
            reply_text=settings.reply_text,
        )
        cost = answer.input_tokens + (answer.max_tokens if answer.max_tokens is not None else settings.output_tokens)
        admission = admit(dialect, state, cost)
    except MockError as err:
        await send_error(dialect, err, base, send)
        return err.status
    except ClientGone:
        return 499
    delay = settings.chunk_tokens / settings.tokens_per_second if settings.tokens_per_second > 0 else 0.0
    # Watch for the client hanging up only while there is time to: a latency or a paced stream.
    gone = asyncio.ensure_future(_wait_disconnect(receive)) if latency > 0 or delay > 0 else None
    try:
        if latency > 0:
            assert gone is not None
            await asyncio.wait((gone,), timeout=latency / 1000)
            if gone.done():
                state.stats.closed_early += 1
                return 499
        if conv.last == "tool_result":  # the last few, for tests that check a tool's result arrived
            state.stats.tool_results.append(conv.tool_result_text[:500])
            del state.stats.tool_results[:-20]
        state.stats.input_tokens += answer.input_tokens
        state.stats.output_tokens += answer.output_tokens
        base += dialect.limit_headers(admission)
        if not answer.stream:
            await send_body(send, 200, dialect.response(answer), base)
            return 200
        stream = dialect.stream(answer)
        cut = settings.truncate_after_chunks is not None and settings.truncate_count != 0
        if cut and settings.truncate_after_chunks is not None:
            if settings.truncate_count is not None:
                settings.truncate_count -= 1
            stream.chunks = stream.chunks[:settings.truncate_after_chunks]
            stream.tail = []
            if not stream.chunks:
                stream.head = []  # nothing at all after the status line
        if not await _send_stream(send, stream, base, delay, gone):
            state.stats.closed_early += 1
            return 499
        if cut and settings.truncate_drop:
            raise ConnectionAbortedError("mock: connection dropped mid-stream (truncate_drop)")
        return 200
    finally:
        if gone is not None:
            gone.cancel()


async def send_error(dialect: Dialect, err: MockError, base: Headers, send: Send) -> None:
    headers = base + err.headers
    if err.retry_after is not None and dialect.retry_headers:
        headers.append((b"retry-after", str(max(1, math.ceil(err.retry_after))).encode()))
        headers.append((b"retry-after-ms", str(math.ceil(err.retry_after * 1000)).encode()))
    await send_body(send, err.status, err.body if err.body is not None else dialect.error_body(err), headers)


async def send_body(send: Send, status: int, body: bytes, headers: Headers) -> None:
    headers = [JSON_TYPE, (b"content-length", str(len(body)).encode()), *headers]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def send_json(send: Send, status: int, value: Any) -> None:
    await send_body(send, status, orjson.dumps(value), [])


async def _send_stream(send: Send, stream: Stream, base: Headers, delay: float,
                       gone: asyncio.Future[None] | None) -> bool:
    """False when the client left before the end (the mock then stops, like a real provider)."""
    await send({"type": "http.response.start", "status": 200, "headers": stream.headers + base})
    if delay <= 0 or len(stream.chunks) < 2 or gone is None:
        # Unpaced: one write; the client still sees the same frames.
        body = b"".join(stream.head + stream.chunks + stream.tail)
        await send({"type": "http.response.body", "body": body})
        return True
    first = b"".join(stream.head) + stream.chunks[0]
    await send({"type": "http.response.body", "body": first, "more_body": True})
    for chunk in stream.chunks[1:]:
        await asyncio.sleep(delay)  # pacing: the mock's generation speed
        if gone.done():
            return False
        await send({"type": "http.response.body", "body": chunk, "more_body": True})
    await send({"type": "http.response.body", "body": b"".join(stream.tail)})
    return True


async def _wait_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def read_body(receive: Receive) -> bytes:
    message = await receive()
    if message["type"] == "http.disconnect":
        raise ClientGone
    body: bytes = message.get("body", b"")
    if not message.get("more_body", False):
        return body
    parts = [body]
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        parts.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(parts)


async def pause(ms: float) -> None:
    if ms > 0:
        await asyncio.sleep(ms / 1000)


def _number(text: str, default: float) -> float:
    try:
        value = float(text)
    except ValueError:
        return default
    return value if math.isfinite(value) and value >= 0 else default


def fail_status(text: str) -> int | None:
    try:
        code = int(text.strip())
    except ValueError:
        return None
    return code if 400 <= code <= 599 else None


HOLE = "\x00hole\x00"
_HOLE_JSON = orjson.dumps(HOLE)


class Template:
    """A JSON document serialized once with HOLE placeholders, then filled per chunk.

    Streams repeat one envelope with a small varying part; filling two byte strings around
    orjson.dumps(text) is several times cheaper than building and dumping a dict per chunk.
    """

    __slots__ = ("_parts",)

    def __init__(self, value: Any, prefix: bytes = b"", suffix: bytes = b"") -> None:
        parts = orjson.dumps(value).split(_HOLE_JSON)
        parts[0] = prefix + parts[0]
        parts[-1] += suffix
        self._parts = parts

    def fill(self, *values: Any) -> bytes:
        parts = self._parts
        if len(values) == 1:
            return parts[0] + orjson.dumps(values[0]) + parts[1]
        out = [parts[0]]
        for value, part in zip(values, parts[1:], strict=True):
            out.append(orjson.dumps(value))
            out.append(part)
        return b"".join(out)
