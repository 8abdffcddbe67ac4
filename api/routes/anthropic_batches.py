"""Anthropic Message Batches: `POST /v1/messages/batches`, `GET .../{id}`, list, `POST .../{id}/cancel`,
`DELETE .../{id}`, `GET .../{id}/results` (JSONL). `results_url` points at this server."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import msgspec
import orjson
from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from api.dialects import ANTHROPIC
from api.routes.batch_common import (
    BatchContext,
    create_inline,
    decode_body,
    delete_batch,
    guarded,
    internal_id,
    page_limit,
    result_lines,
)
from shared.batches.lines import ANTHROPIC_ENDPOINT
from shared.batches.records import TERMINAL, BatchView
from shared.errors import GatewayError, invalid

router = APIRouter()
PREFIX = "msgbatch_"


class _Request(msgspec.Struct):
    custom_id: str
    params: msgspec.Raw


class _Create(msgspec.Struct):
    requests: list[_Request]


_create = msgspec.json.Decoder(_Create)


def _time(seconds: int) -> str | None:
    return datetime.fromtimestamp(seconds, UTC).isoformat().replace("+00:00", "Z") if seconds else None


def batch_object(v: BatchView, base_url: str) -> dict[str, Any]:
    ended = v.status in TERMINAL
    status = "ended" if ended else "canceling" if v.status == "cancelling" else "in_progress"
    # as Anthropic's: requests move out of `processing` only once the whole batch has ended
    counts = ({"processing": 0, "succeeded": v.n_s, "errored": v.n_e, "canceled": v.n_c, "expired": v.n_x} if ended
              else {"processing": v.total, "succeeded": 0, "errored": 0, "canceled": 0, "expired": 0})
    return {
        "id": f"{PREFIX}{v.id}", "type": "message_batch", "processing_status": status, "request_counts": counts,
        "ended_at": _time(v.ended_at) if ended else None, "created_at": _time(v.created_at),
        "expires_at": _time(v.expires_at), "archived_at": None, "cancel_initiated_at": _time(v.cancelling_at),
        "results_url": f"{base_url}v1/messages/batches/{PREFIX}{v.id}/results" if ended else None,
    }


def _json(value: object) -> Response:
    return Response(orjson.dumps(value), media_type="application/json")


async def _owned(ctx: BatchContext, public_id: str) -> BatchView:
    view = await ctx.records.batch(internal_id(public_id, PREFIX, "message batch"), ctx.client)
    if view is None or view.dialect != "anthropic":
        raise GatewayError("not_found", f"No message batch with id {public_id!r}.")
    return view


@router.post("/v1/messages/batches")
async def create(request: Request) -> Response:
    async def body(ctx: BatchContext) -> Response:
        settings = ctx.config.batches
        raw = await request.body()
        if len(raw) > settings.anthropic_max_bytes:
            raise invalid(f"The batch is {len(raw)} bytes; the limit is {settings.anthropic_max_bytes}.", "requests")
        req = decode_body(_create, raw)
        if not req.requests:
            raise invalid("'requests' must hold at least one request.", "requests")
        if len(req.requests) > settings.anthropic_max_requests:
            raise invalid(f"A batch takes up to {settings.anthropic_max_requests} requests.", "requests")
        lines = [msgspec.json.encode(r) + b"\n" for r in req.requests]
        view = await create_inline(ctx, "anthropic", ANTHROPIC_ENDPOINT, "", lines,
                                   (settings.anthropic_max_requests, settings.anthropic_max_bytes), "requests")
        return _json(batch_object(view, str(request.base_url)))

    return await guarded(request, ANTHROPIC, body)


@router.get("/v1/messages/batches/{batch_id}")
async def retrieve(request: Request, batch_id: str) -> Response:
    async def body(ctx: BatchContext) -> Response:
        return _json(batch_object(await _owned(ctx, batch_id), str(request.base_url)))

    return await guarded(request, ANTHROPIC, body)


@router.get("/v1/messages/batches")
async def list_batches(request: Request) -> Response:
    async def body(ctx: BatchContext) -> Response:
        q = request.query_params
        limit = page_limit(q.get("limit"), 20, 1000)
        after = internal_id(q["after_id"], PREFIX, "message batch") if q.get("after_id") else None
        before = internal_id(q["before_id"], PREFIX, "message batch") if q.get("before_id") else None
        ids = await ctx.records.list_ids(ctx.records.batch_list(ctx.client), None, 100_000)
        if after:
            ids = ids[ids.index(after) + 1:] if after in ids else []
        if before:
            ids = list(reversed(ids[: ids.index(before)])) if before in ids else []
        data = []
        for batch_id in ids:
            view = await ctx.records.batch(batch_id, ctx.client)
            if view is not None and view.dialect == "anthropic":
                data.append(batch_object(view, str(request.base_url)))
            if len(data) > limit:
                break
        more = len(data) > limit
        data = data[:limit]
        if before:
            data.reverse()
        return _json({"data": data, "has_more": more, "first_id": data[0]["id"] if data else None,
                      "last_id": data[-1]["id"] if data else None})

    return await guarded(request, ANTHROPIC, body)


@router.post("/v1/messages/batches/{batch_id}/cancel")
async def cancel(request: Request, batch_id: str) -> Response:
    async def body(ctx: BatchContext) -> Response:
        view = await _owned(ctx, batch_id)
        await ctx.records.transition(view.id, ("validating", "in_progress"), "cancelling", "cancelling_at")
        return _json(batch_object(await _owned(ctx, batch_id), str(request.base_url)))

    return await guarded(request, ANTHROPIC, body)


@router.delete("/v1/messages/batches/{batch_id}")
async def delete(request: Request, batch_id: str) -> Response:
    async def body(ctx: BatchContext) -> Response:
        view = await _owned(ctx, batch_id)
        if view.status not in TERMINAL:
            raise invalid("A message batch can be deleted only once it has ended; cancel it first.", "batch_id")
        await delete_batch(ctx, view)
        return _json({"id": f"{PREFIX}{view.id}", "type": "message_batch_deleted"})

    return await guarded(request, ANTHROPIC, body)


@router.get("/v1/messages/batches/{batch_id}/results")
async def results(request: Request, batch_id: str) -> Response:
    async def body(ctx: BatchContext) -> Response:
        view = await _owned(ctx, batch_id)
        if view.status not in TERMINAL:
            raise invalid("The message batch has not ended yet; its results are not ready.", "batch_id")
        return StreamingResponse(result_lines(ctx, view), media_type="application/binary")

    return await guarded(request, ANTHROPIC, body)
