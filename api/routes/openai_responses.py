"""`POST /v1/responses` (OpenAI Responses; stateless: no previous_response_id)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from api.dialects import OPENAI_RESPONSES
from api.routes.common import serve
from shared.protocols import openai_responses


async def responses(request: Request) -> Response:
    return await serve(request, OPENAI_RESPONSES, openai_responses.parse_request)
