"""Gemini batch mode with inline requests, as google-genai's `client.batches` drives it:
`POST models/{model}:batchGenerateContent`, `GET batches/{name}`, `GET batches`,
`POST batches/{name}:cancel`, `DELETE batches/{name}`, under `/v1beta` and `/v1` (the SDK uses
`/v1` with a custom base URL, where OpenAI's `/v1/batches` also lives: OpenAI ids carry a
`batch_` prefix and OpenAI clients send no Google key, which tells the two apart)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import msgspec
import orjson
from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from api.dialects import GEMINI
from api.routes.batch_common import (
    BatchContext,
    create_inline,
    decode_body,
    delete_batch,
    guarded,
    internal_id,
    page_limit,
)
from shared.batches.lines import GEMINI_ENDPOINT
from shared.batches.records import TERMINAL, BatchView
from shared.errors import GatewayError, invalid

router = APIRouter()

_STATES = {"validating": "BATCH_STATE_PENDING", "in_progress": "BATCH_STATE_RUNNING",
           "finalizing": "BATCH_STATE_RUNNING", "cancelling": "BATCH_STATE_RUNNING",
           "completed": "BATCH_STATE_SUCCEEDED", "failed": "BATCH_STATE_FAILED",
           "cancelled": "BATCH_STATE_CANCELLED", "expired": "BATCH_STATE_EXPIRED"}


class _Inlined(msgspec.Struct):
    request: msgspec.Raw
    metadata: dict[str, Any] | None = None


class _Requests(msgspec.Struct):
    requests: list[_Inlined]


class _InputConfig(msgspec.Struct):
    requests: _Requests


class _Batch(msgspec.Struct, rename="camel"):
    input_config: _InputConfig
    display_name: str = ""


class _Create(msgspec.Struct):
    batch: _Batch


_create = msgspec.json.Decoder(_Create)


def is_gemini(request: Request, batch_id: str | None = None) -> bool:
    """Whether a `/v1/batches...` request is Gemini's rather than OpenAI's."""
    if batch_id is not None:
        return not batch_id.startswith("batch_")
    return "x-goog-api-key" in request.headers or "key" in request.query_params


def _time(seconds: int) -> str | None:
    return datetime.fromtimestamp(seconds, UTC).isoformat().replace("+00:00", "Z") if seconds else None


async def job_object(ctx: BatchContext, v: BatchView) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "@type": "type.googleapis.com/google.ai.generativelanguage.v1main.GenerateContentBatch",
        "model": f"models/{v.model}", "displayName": v.display_name or v.id, "state": _STATES[v.status],
        "createTime": _time(v.created_at), "updateTime": _time(v.ended_at or v.in_progress_at or v.created_at),
        "batchStats": {"requestCount": str(v.total), "successfulRequestCount": str(v.n_s),
                       "failedRequestCount": str(v.n_e + v.n_c + v.n_x),
                       "pendingRequestCount": str(max(0, v.total - v.done))},
    }
    if v.status in TERMINAL:
        metadata["endTime"] = _time(v.ended_at)
        metadata["output"] = {"inlinedResponses": {"inlinedResponses": await _inlined(ctx, v)}}
    return {"name": f"batches/{v.id}", "metadata": metadata, "done": v.status in TERMINAL}


async def _inlined(ctx: BatchContext, v: BatchView) -> list[dict[str, Any]]:
    """Inline results come back in request order (the results file is in finishing order)."""
    by_key: dict[str, dict[str, Any]] = {}
    for file_id in (v.out_file, v.err_file):
        if not file_id or await ctx.store.size(f"files/{file_id}") is None:
            continue
        data = b"".join([chunk async for chunk in ctx.store.read(f"files/{file_id}")])
        for raw in data.splitlines():
            if raw.strip():
                entry = orjson.loads(raw)
                key = entry.pop("key")
                entry["metadata"] = {"key": key}
                by_key[key] = entry
    return [by_key[k] for k in sorted(by_key, key=_order)]


def _order(key: str) -> tuple[int, str]:
    return (int(key), key) if key.isdigit() else (1 << 62, key)


def _json(value: object) -> Response:
    return Response(orjson.dumps(value), media_type="application/json")


async def _owned(ctx: BatchContext, name: str) -> BatchView:
    view = await ctx.records.batch(internal_id(name.removeprefix("batches/"), "", "batch"), ctx.client)
    if view is None or view.dialect != "gemini":
        raise GatewayError("not_found", f"Batch 'batches/{name}' was not found.")
    return view


async def create(request: Request, model: str) -> Response:
    async def body(ctx: BatchContext) -> Response:
        settings = ctx.config.batches
        raw = await request.body()
        if len(raw) > settings.gemini_max_inline_bytes:
            raise invalid(f"Inline requests total {len(raw)} bytes; the limit is {settings.gemini_max_inline_bytes}.",
                          "batch.inputConfig.requests")
        req = decode_body(_create, raw)
        if ctx.config.model(model) is None:
            raise GatewayError("not_found", f"The model '{model}' does not exist.", param="model")
        items = req.batch.input_config.requests.requests
        if not items:
            raise invalid("The batch holds no requests.", "batch.inputConfig.requests")
        # the key is the request's index: results go back in request order, with the caller's metadata
        lines = [msgspec.json.encode({"key": str(i), "request": item.request}) + b"\n" for i, item in enumerate(items)]
        view = await create_inline(ctx, "gemini", GEMINI_ENDPOINT, model, lines,
                                   (settings.anthropic_max_requests, settings.gemini_max_inline_bytes),
                                   "batch.inputConfig.requests.requests", req.batch.display_name)
        return _json(await job_object(ctx, view))

    return await guarded(request, GEMINI, body)


async def get_job(request: Request, name: str) -> Response:
    async def body(ctx: BatchContext) -> Response:
        return _json(await job_object(ctx, await _owned(ctx, name)))

    return await guarded(request, GEMINI, body)


async def list_jobs(request: Request) -> Response:
    async def body(ctx: BatchContext) -> Response:
        limit = page_limit(request.query_params.get("pageSize"), 50, 1000)
        token = request.query_params.get("pageToken")
        ids = await ctx.records.list_ids(ctx.records.batch_list(ctx.client), token, 100_000)
        jobs: list[dict[str, Any]] = []
        last = None
        for batch_id in ids:
            view = await ctx.records.batch(batch_id, ctx.client)
            if view is not None and view.dialect == "gemini":
                if len(jobs) == limit:
                    return _json({"operations": jobs, "nextPageToken": last})
                jobs.append(await job_object(ctx, view))
                last = batch_id
        return _json({"operations": jobs})

    return await guarded(request, GEMINI, body)


async def cancel_job(request: Request, name: str) -> Response:
    async def body(ctx: BatchContext) -> Response:
        view = await _owned(ctx, name)
        await ctx.records.transition(view.id, ("validating", "in_progress"), "cancelling", "cancelling_at")
        return _json({})

    return await guarded(request, GEMINI, body)


async def delete_job(request: Request, name: str) -> Response:
    async def body(ctx: BatchContext) -> Response:
        view = await _owned(ctx, name)
        if view.status not in TERMINAL:  # Gemini deletes a running job after cancelling it
            await ctx.records.transition(view.id, ("validating", "in_progress"), "cancelling", "cancelling_at")
            return _json({"name": f"batches/{view.id}", "done": False})
        await delete_batch(ctx, view)
        return _json({"name": f"batches/{view.id}", "done": True})

    return await guarded(request, GEMINI, body)


@router.get("/v1beta/batches/{name}")
async def get_v1beta(request: Request, name: str) -> Response:
    return await get_job(request, name)


@router.get("/v1beta/batches")
async def list_v1beta(request: Request) -> Response:
    return await list_jobs(request)


@router.post("/v1beta/batches/{name}:cancel")
@router.post("/v1/batches/{name}:cancel")
async def cancel_route(request: Request, name: str) -> Response:
    return await cancel_job(request, name)


@router.delete("/v1beta/batches/{name}")
@router.delete("/v1/batches/{name}")
async def delete_route(request: Request, name: str) -> Response:
    return await delete_job(request, name)
