"""`POST /v1/chat/completions` (OpenAI Chat Completions)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from api.dialects import OPENAI_CHAT
from api.routes.common import serve
from shared.protocols import openai_chat


async def chat_completions(request: Request) -> Response:
    return await serve(request, OPENAI_CHAT, openai_chat.parse_request)
