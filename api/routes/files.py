"""OpenAI Files: `POST/GET /v1/files`, `GET /v1/files/{id}`, `GET /v1/files/{id}/content`,
`DELETE /v1/files/{id}`. A file belongs to the tenant that uploaded it (others get 404); batch
output files belong to the batch's tenant. Files of purpose `batch` feed batches; `user_data`
and `assistants` ones are read in prompts by `file_id` (api/documents.py).

The same routes answer the Anthropic SDK's Files API (`beta.files`: upload, retrieve metadata,
delete), told apart by its `anthropic-version` header, in Anthropic's shapes and errors; such
an upload has no purpose and is stored as `user_data`."""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import AsyncIterator

import orjson
from fastapi import APIRouter
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from api.dialects import ANTHROPIC, OPENAI_CHAT, Dialect
from api.routes.batch_common import BatchContext, guarded, page_limit
from shared.batches.records import FileView, now_s
from shared.errors import GatewayError, invalid

router = APIRouter()

_FILE_ID = re.compile(r"^file-[A-Za-z0-9]{1,64}$")
PURPOSES = ("batch", "user_data", "assistants")  # what a client may upload
UPLOAD_CHUNK = 1024 * 1024


def _anthropic(request: Request) -> bool:
    return "anthropic-version" in request.headers


def _dialect(request: Request) -> Dialect:
    return ANTHROPIC if _anthropic(request) else OPENAI_CHAT


def anthropic_file_object(f: FileView, mime_type: str) -> dict[str, object]:
    created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(f.created_at))
    return {"id": f.id, "type": "file", "filename": f.filename, "mime_type": mime_type, "size_bytes": f.bytes,
            "created_at": created, "downloadable": False}


def file_object(f: FileView) -> dict[str, object]:
    return {"id": f.id, "object": "file", "bytes": f.bytes, "created_at": f.created_at, "filename": f.filename,
            "purpose": f.purpose, "status": "processed", "expires_at": f.expires_at or None,
            "status_details": None}


_MULTIPART_SLACK = 64 * 1024  # the form's boundaries, headers and 'purpose' field around the file


def _json(value: object, status: int = 200) -> Response:
    return Response(orjson.dumps(value), status, media_type="application/json")


async def owned_file(ctx: BatchContext, file_id: str) -> FileView:
    view = await ctx.records.file(file_id, ctx.client) if _FILE_ID.match(file_id) else None
    if view is None:
        raise GatewayError("not_found", f"No such File object: {file_id}", param="id")
    return view


@router.post("/v1/files")
async def create_file(request: Request) -> Response:
    async def body(ctx: BatchContext) -> Response:
        limit = ctx.config.batches.max_bytes
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit + _MULTIPART_SLACK:
            # 413 before a byte of the upload is read
            raise GatewayError("request_too_large", f"The upload is larger than the file limit of {limit} bytes.",
                               status=413, param="file")
        form = await request.form(max_files=1, max_fields=8)
        try:
            upload, purpose = form.get("file"), form.get("purpose")
            if not isinstance(upload, UploadFile):
                raise invalid("'file' is required (multipart/form-data).", "file")
            if _anthropic(request):
                purpose = "user_data"  # Anthropic's files have no purpose: they are for prompts
            if purpose not in PURPOSES:
                raise invalid(f"'purpose' must be one of {', '.join(PURPOSES)}.", "purpose")
            if upload.size is not None and upload.size > limit:
                raise invalid(f"The file is {upload.size} bytes; the limit is {limit}.", "file")
            file_id = f"file-{secrets.token_hex(12)}"

            async def chunks() -> AsyncIterator[bytes]:
                size = 0
                while chunk := await upload.read(UPLOAD_CHUNK):
                    size += len(chunk)
                    if size > limit:
                        raise invalid(f"The file is over the limit of {limit} bytes.", "file")
                    yield chunk

            try:
                size = await ctx.store.put(f"files/{file_id}", chunks())
            except GatewayError:
                await ctx.store.delete(f"files/{file_id}")
                raise
            filename = upload.filename or ("input.jsonl" if purpose == "batch" else "upload")
            view = FileView(file_id, ctx.client, filename, purpose, size, now_s())
            await ctx.records.save_file(view)
            if _anthropic(request):
                return _json(anthropic_file_object(view, upload.content_type or "application/octet-stream"))
            return _json(file_object(view))
        finally:
            await form.close()

    return await guarded(request, _dialect(request), body)


@router.get("/v1/files")
async def list_files(request: Request) -> Response:
    async def body(ctx: BatchContext) -> Response:
        limit = page_limit(request.query_params.get("limit"), 10_000, 10_000)
        purpose = request.query_params.get("purpose")
        ids = await ctx.records.list_ids(ctx.records.file_list(ctx.client), request.query_params.get("after"), limit)
        data = []
        for file_id in ids:
            view = await ctx.records.file(file_id, ctx.client)
            if view is not None and (purpose is None or view.purpose == purpose):
                data.append(file_object(view))
        more = len(data) > limit
        data = data[:limit]
        return _json({"object": "list", "data": data, "first_id": data[0]["id"] if data else None,
                      "last_id": data[-1]["id"] if data else None, "has_more": more})

    return await guarded(request, OPENAI_CHAT, body)


@router.get("/v1/files/{file_id}")
async def get_file(request: Request, file_id: str) -> Response:
    async def body(ctx: BatchContext) -> Response:
        view = await owned_file(ctx, file_id)
        if _anthropic(request):
            try:  # the type a prompt would read it as (api/documents.py): its bytes decide
                head = b"".join([c async for c in ctx.store.read(f"files/{view.id}", 0, 5)])
            except FileNotFoundError:
                raise GatewayError("not_found", f"The content of {file_id} is no longer available.",
                                   param="id") from None
            return _json(anthropic_file_object(view, "application/pdf" if head == b"%PDF-" else "text/plain"))
        return _json(file_object(view))

    return await guarded(request, _dialect(request), body)


@router.get("/v1/files/{file_id}/content")
async def file_content(request: Request, file_id: str) -> Response:
    async def body(ctx: BatchContext) -> Response:
        view = await owned_file(ctx, file_id)
        if await ctx.store.size(f"files/{view.id}") is None:
            raise GatewayError("not_found", f"The content of {file_id} is no longer available.", param="id")
        return StreamingResponse(ctx.store.read(f"files/{view.id}"), media_type="application/octet-stream",
                                 headers={"content-length": str(view.bytes)})

    return await guarded(request, OPENAI_CHAT, body)


@router.delete("/v1/files/{file_id}")
async def delete_file(request: Request, file_id: str) -> Response:
    async def body(ctx: BatchContext) -> Response:
        view = await owned_file(ctx, file_id)
        await ctx.store.delete(f"files/{view.id}")
        await ctx.records.drop_file(view)
        if _anthropic(request):
            return _json({"id": view.id, "type": "file_deleted"})
        return _json({"id": view.id, "object": "file", "deleted": True})

    return await guarded(request, _dialect(request), body)
