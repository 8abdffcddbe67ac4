"""OpenAI Batches: `POST /v1/batches`, `GET /v1/batches/{id}`, `POST /v1/batches/{id}/cancel`,
`GET /v1/batches?after=&limit=`. The lines run on Sluice's own workers (`sluice batcher`)."""

from __future__ import annotations

import secrets
from typing import Any

import msgspec
import orjson
from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from api.dialects import OPENAI_CHAT
from api.routes import gemini_batches
from api.routes.batch_common import BatchContext, decode_body, guarded, internal_id, page_limit
from api.routes.files import owned_file
from shared.batches.lines import OPENAI_ENDPOINTS
from shared.batches.records import BatchView, now_s
from shared.errors import GatewayError, invalid

router = APIRouter()


class ExpiresAfter(msgspec.Struct, forbid_unknown_fields=True):
    anchor: str
    seconds: int


class CreateBatch(msgspec.Struct, forbid_unknown_fields=True):
    input_file_id: str
    endpoint: str
    completion_window: str
    metadata: dict[str, str] | None = None
    output_expires_after: ExpiresAfter | None = None


_create = msgspec.json.Decoder(CreateBatch)


def _ts(value: int) -> int | None:
    return value or None


def batch_object(v: BatchView) -> dict[str, Any]:
    errors = None
    if v.errors:
        errors = {"object": "list", "data": msgspec.json.decode(v.errors)}
    return {
        "id": f"batch_{v.id}", "object": "batch", "endpoint": v.endpoint, "model": v.model or None,
        "errors": errors, "input_file_id": v.input_file_id, "completion_window": v.completion_window,
        "status": v.status, "output_file_id": v.out_file or None, "error_file_id": v.err_file or None,
        "created_at": v.created_at, "in_progress_at": _ts(v.in_progress_at), "expires_at": v.expires_at,
        "finalizing_at": _ts(v.finalizing_at), "completed_at": _ts(v.completed_at), "failed_at": _ts(v.failed_at),
        "expired_at": _ts(v.expired_at), "cancelling_at": _ts(v.cancelling_at), "cancelled_at": _ts(v.cancelled_at),
        # failed = every request that did not succeed: errored, expired or cancelled before it ran
        "request_counts": {"total": v.total, "completed": v.n_s, "failed": v.n_e + v.n_c + v.n_x},
        "usage": {"input_tokens": v.tokens_in, "output_tokens": v.tokens_out,
                  "total_tokens": v.tokens_in + v.tokens_out, "input_tokens_details": {"cached_tokens": 0},
                  "output_tokens_details": {"reasoning_tokens": 0}},
        "metadata": msgspec.json.decode(v.metadata) if v.metadata else None,
    }


def _json(value: object) -> Response:
    return Response(orjson.dumps(value), media_type="application/json")


def _parse_create(raw: bytes) -> CreateBatch:
    req = decode_body(_create, raw)
    if req.endpoint not in OPENAI_ENDPOINTS:
        raise invalid(f"'endpoint' must be one of {', '.join(OPENAI_ENDPOINTS)}.", "endpoint")
    if req.completion_window != "24h":
        raise invalid("'completion_window' must be '24h'.", "completion_window")
    meta = req.metadata or {}
    if len(meta) > 16 or any(len(k) > 64 or len(v) > 512 for k, v in meta.items()):
        raise invalid("'metadata' takes up to 16 pairs, keys up to 64 and values up to 512 characters.", "metadata")
    exp = req.output_expires_after
    if exp is not None and (exp.anchor != "created_at" or not 3600 <= exp.seconds <= 2_592_000):
        raise invalid("'output_expires_after' needs anchor 'created_at' and 3600 to 2592000 seconds.",
                      "output_expires_after")
    return req


@router.post("/v1/batches")
async def create_batch(request: Request) -> Response:
    async def body(ctx: BatchContext) -> Response:
        req = _parse_create(await request.body())
        try:
            source = await owned_file(ctx, req.input_file_id)
        except GatewayError:
            raise GatewayError("not_found", f"No such File object: {req.input_file_id}",
                               param="input_file_id") from None
        if source.purpose != "batch":
            raise invalid("The input file's purpose must be 'batch'.", "input_file_id")
        now = now_s()
        view = BatchView(
            id=secrets.token_hex(12), dialect="openai", client=ctx.client, endpoint=req.endpoint,
            status="validating", created_at=now, expires_at=now + int(ctx.config.batches.completion_window_seconds),
            input_file_id=source.id, completion_window=req.completion_window,
            metadata=msgspec.json.encode(req.metadata).decode() if req.metadata is not None else "",
            output_expires_after=req.output_expires_after.seconds if req.output_expires_after else 0,
        )
        await ctx.records.create_batch(view)
        return _json(batch_object(view))

    return await guarded(request, OPENAI_CHAT, body)


async def _owned(ctx: BatchContext, public_id: str) -> BatchView:
    view = await ctx.records.batch(internal_id(public_id, "batch_", "batch"), ctx.client)
    if view is None or view.dialect != "openai":
        raise GatewayError("not_found", f"No batch with id {public_id!r}.")
    return view


@router.get("/v1/batches/{batch_id}")
async def get_batch(request: Request, batch_id: str) -> Response:
    if gemini_batches.is_gemini(request, batch_id):
        return await gemini_batches.get_job(request, batch_id)

    async def body(ctx: BatchContext) -> Response:
        return _json(batch_object(await _owned(ctx, batch_id)))

    return await guarded(request, OPENAI_CHAT, body)


@router.post("/v1/batches/{batch_id}/cancel")
async def cancel_batch(request: Request, batch_id: str) -> Response:
    async def body(ctx: BatchContext) -> Response:
        view = await _owned(ctx, batch_id)
        moved, status = await ctx.records.transition(view.id, ("validating", "in_progress"), "cancelling",
                                                     "cancelling_at")
        if not moved and status not in ("cancelling", "cancelled"):
            raise invalid(f"A batch that is {status} cannot be cancelled.", "batch_id")
        return _json(batch_object(await _owned(ctx, batch_id)))

    return await guarded(request, OPENAI_CHAT, body)


@router.get("/v1/batches")
async def list_batches(request: Request) -> Response:
    if gemini_batches.is_gemini(request):
        return await gemini_batches.list_jobs(request)

    async def body(ctx: BatchContext) -> Response:
        limit = page_limit(request.query_params.get("limit"))
        after = request.query_params.get("after")
        after_id = internal_id(after, "batch_", "batch") if after else None
        data = []
        for batch_id in await ctx.records.list_ids(ctx.records.batch_list(ctx.client), after_id, limit * 2 + 2):
            view = await ctx.records.batch(batch_id, ctx.client)
            if view is not None and view.dialect == "openai":
                data.append(batch_object(view))
            if len(data) > limit:
                break
        more = len(data) > limit
        data = data[:limit]
        return _json({"object": "list", "data": data, "first_id": data[0]["id"] if data else None,
                      "last_id": data[-1]["id"] if data else None, "has_more": more})

    return await guarded(request, OPENAI_CHAT, body)
