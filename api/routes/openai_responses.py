"""`POST /v1/responses` (OpenAI Responses); storing and chaining are api/routes/stored_responses.py."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from api.routes import stored_responses


async def responses(request: Request) -> Response:
    return await stored_responses.create(request)
