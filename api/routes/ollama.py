"""The Ollama-compatible surface: `GET /api/version`, `GET /api/tags`, `POST /api/show` and
`POST /api/chat`, answered from Sluice's models and queue like every other client protocol.

Ollama has no API keys of its own; its clients send Sluice's in a header they are configured
with (`Authorization: Bearer ...`, e.g. `ollama.Client(headers=...)`). Chat goes through the same
`serve` as every dialect; its stream, which api/streaming.py writes as SSE frames with no ids or event
names, leaves here as NDJSON (one JSON object per line), which is what Ollama clients read.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from api.auth import authenticate
from api.dialects import OLLAMA
from api.errors import error_response
from api.limits import parse_bounded, read_body
from api.routes.common import serve
from api.state import state_of
from shared.errors import GatewayError
from shared.protocols import ollama

router = APIRouter()
NDJSON = "application/x-ndjson"
_DATA = len(b"data: ")


@router.get("/api/version")
async def version() -> Response:
    return Response(ollama.version(), media_type="application/json")


@router.get("/api/tags")
async def tags(request: Request) -> Response:
    state = state_of(request)
    try:
        client = authenticate(request, state.clients)
    except GatewayError as err:
        return error_response(OLLAMA, err)
    tenancy = state.tenancy  # a tenant sees only the models it may use, as on /v1/models
    names = [m.name for m in state.config.models if tenancy is None or tenancy.allows(client, m.name)]
    return Response(ollama.list_models(names), media_type="application/json")


@router.post("/api/show")
async def show(request: Request) -> Response:
    state = state_of(request)
    try:
        client = authenticate(request, state.clients)
        limits = state.config.request_limits
        model = parse_bounded(ollama.parse_show_request,
                              await read_body(request, limits.max_body_bytes, limits.body_read_seconds))
        tenancy = state.tenancy
        if state.config.model(model) is None or (tenancy is not None and not tenancy.allows(client, model)):
            raise GatewayError("not_found", f"model '{model}' not found", param="model")
    except GatewayError as err:
        return error_response(OLLAMA, err)
    return Response(ollama.show_model(model), media_type="application/json")


async def chat(request: Request) -> Response:
    response = await serve(request, OLLAMA, ollama.parse_request)
    if isinstance(response, StreamingResponse):
        response.body_iterator = _ndjson(response.body_iterator)  # type: ignore[arg-type]
        response.headers["content-type"] = NDJSON
        response.media_type = NDJSON
    return response


async def _ndjson(frames: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """`data: {json}\\n\\n` frames -> `{json}\\n` lines. The JSON never holds a raw newline (orjson
    escapes them), so the blank line between frames is an exact separator."""
    async for chunk in frames:
        lines = b"".join(f[_DATA:] + b"\n" for f in chunk.split(b"\n\n") if f)
        if lines:  # keep-alives are empty: a blank line would break a line reader
            yield lines
