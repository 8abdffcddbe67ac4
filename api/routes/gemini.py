"""Gemini's `models/{model}:generateContent` and `:streamGenerateContent?alt=sse`."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from api.dialects import GEMINI
from api.errors import error_response
from api.routes.common import serve
from shared.errors import GatewayError
from shared.protocols import gemini


async def generate(request: Request) -> Response:
    """The method target `{model}:{method}` is the path's last segment."""
    target = request.url.path.rsplit("/", 1)[-1]
    model, _, method = target.rpartition(":")
    if method not in ("generateContent", "streamGenerateContent") or not model:
        return error_response(GEMINI, GatewayError("not_found", f"Unknown method '{target}'."))
    stream = method == "streamGenerateContent"
    return await serve(request, GEMINI, lambda body: gemini.parse_request(body, model, stream))
