"""Gemini's `models/{model}:generateContent` and `:streamGenerateContent?alt=sse`, under both
`/v1beta` and `/v1` (the current google-genai SDK calls `/v1` when given a custom base URL)."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from api.dialects import GEMINI
from api.relay import error_response
from api.routes.common import serve
from api.routes.embeddings import gemini_embed
from shared.errors import GatewayError
from shared.protocols import gemini, gemini_embeddings

router = APIRouter()


async def _generate(request: Request, target: str) -> Response:
    model, _, method = target.rpartition(":")
    if method in gemini_embeddings.METHODS and model:
        return await gemini_embed(request, model, method)
    if method not in ("generateContent", "streamGenerateContent") or not model:
        return error_response(GEMINI, GatewayError("not_found", f"Unknown method '{target}'."))
    stream = method == "streamGenerateContent"
    return await serve(request, GEMINI, lambda body: gemini.parse_request(body, model, stream))


async def generate(request: Request) -> Response:
    """The fast path's entry (api/fastpath.py): the method target is the last path segment."""
    return await _generate(request, request.url.path.rsplit("/", 1)[-1])


@router.post("/v1beta/models/{target}")
async def generate_v1beta(target: str, request: Request) -> Response:
    return await _generate(request, target)


@router.post("/v1/models/{target}")
async def generate_v1(target: str, request: Request) -> Response:
    return await _generate(request, target)
