"""What the file and batch routes of every dialect share: the client, the records, the store,
and turning a GatewayError or a Redis outage into the dialect's own error response."""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

import msgspec
from redis.exceptions import RedisError
from starlette.requests import Request
from starlette.responses import Response

from api.auth import authenticate
from api.dialects import Dialect
from shared.batches.lines import validate
from shared.batches.records import BatchDialect, BatchView, Records, now_s
from shared.batches.store import FileStore, store_for
from shared.config import Config
from shared.errors import GatewayError, field_of, invalid

log = logging.getLogger("sluice.api")

_HEX_ID = re.compile(r"^[0-9a-f]{24}$")

T = TypeVar("T")


def decode_body(decoder: msgspec.json.Decoder[T], raw: bytes) -> T:
    """A create-batch body, or the dialect's 400 naming the field that is wrong."""
    try:
        return decoder.decode(raw)
    except msgspec.ValidationError as exc:
        raise invalid(f"Invalid request body: {exc}", field_of(exc)) from None
    except msgspec.DecodeError:
        raise invalid("The request body is not valid JSON.") from None


class BatchContext:
    def __init__(self, request: Request) -> None:
        state = request.app.state.sluice
        self.config: Config = state.config
        self.client = authenticate(request, state.clients)
        records = getattr(request.app.state, "batch_records", None)
        if records is None:
            records = Records(state.redis, self.config.key_prefix)
            request.app.state.batch_records = records
        self.records: Records = records
        self.store: FileStore = store_for(self.config.batches.data_dir)


def error(dialect: Dialect, err: GatewayError) -> Response:
    status, body, headers = dialect.render_error(err)
    return Response(body, status, headers=headers, media_type="application/json")


async def guarded(request: Request, dialect: Dialect,
                  body: Callable[[BatchContext], Awaitable[Response]]) -> Response:
    try:
        return await body(BatchContext(request))
    except GatewayError as err:
        return error(dialect, err)
    except RedisError:
        log.exception("redis unavailable", extra={"path": request.url.path})
        return error(dialect, GatewayError("upstream_unavailable", "The queue is unavailable; retry shortly.",
                                           status=503, retry_after=1.0))


def internal_id(public: str, prefix: str, what: str) -> str:
    """`batch_<hex>` -> `<hex>`; anything else is a 404 (never a 500 or a path outside the store)."""
    raw = public.removeprefix(prefix)
    if not public.startswith(prefix) or not _HEX_ID.match(raw):
        raise GatewayError("not_found", f"No {what} with id {public!r}.")
    return raw


def page_limit(raw: str | None, default: int = 20, most: int = 100) -> int:
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise invalid("'limit' must be an integer.", "limit") from None
    if not 1 <= value <= most:
        raise invalid(f"'limit' must be between 1 and {most}.", "limit")
    return value


async def create_inline(ctx: BatchContext, dialect: BatchDialect, endpoint: str, model: str, lines: list[bytes],
                        limits: tuple[int, int], where: str, display_name: str = "") -> BatchView:
    """A batch whose requests came in the request body (Anthropic, Gemini): validated here, so a
    bad request is a 400 naming its index, then stored as the batch's input lines."""
    checked = await asyncio.to_thread(validate, lines, dialect, endpoint, model, ctx.config, limits)
    if checked.errors:
        first = checked.errors[0]
        at = f"{where}[{first.line - 1}]" if first.line is not None else where
        param = f"{at}.{first.param}" if first.param else at
        raise invalid(f"{at}: {first.message}", param)
    batch_id = secrets.token_hex(12)
    await ctx.store.put(f"batches/{batch_id}/input.jsonl", lines)
    now = now_s()
    view = BatchView(id=batch_id, dialect=dialect, client=ctx.client, endpoint=endpoint, status="validating",
                     created_at=now, expires_at=now + int(ctx.config.batches.completion_window_seconds),
                     model=model, display_name=display_name, total=checked.total)
    await ctx.records.create_batch(view)
    return view


async def result_lines(ctx: BatchContext, view: BatchView) -> AsyncIterator[bytes]:
    """The ended batch's results: the output file, then the error file."""
    for file_id in (view.out_file, view.err_file):
        if file_id and await ctx.store.size(f"files/{file_id}") is not None:
            async for chunk in ctx.store.read(f"files/{file_id}"):
                yield chunk


async def delete_batch(ctx: BatchContext, view: BatchView) -> None:
    for file_id in (view.out_file, view.err_file):
        if file_id:
            f = await ctx.records.file(file_id, None)
            await ctx.store.delete(f"files/{file_id}")
            if f is not None:
                await ctx.records.drop_file(f)
    await ctx.store.delete_prefix(f"batches/{view.id}/")
    await ctx.records.drop_batch(view)
