"""`POST /v1/chat/completions` (OpenAI Chat Completions)."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from api.auth import authenticate
from api.dialects import OPENAI_CHAT
from api.relay import AppState, error_response, handle, parse_event_id, resume
from shared.errors import GatewayError
from shared.protocols import openai_chat

router = APIRouter()


@router.post("/v1/chat/completions")
async def chat_completions(request: Request) -> Response:
    state: AppState = request.app.state.sluice
    try:
        client = authenticate(request, state.clients)
        last_event_id = request.headers.get("last-event-id")
        if last_event_id:  # the same request sent again by a client resuming its stream
            job_id, seq, n = parse_event_id(last_event_id)
            return await resume(state, client, job_id, (seq, n), OPENAI_CHAT)
        req = openai_chat.parse_request(await request.body())
        return await handle(state, OPENAI_CHAT, client, req, request.headers)
    except GatewayError as err:
        return error_response(OPENAI_CHAT, err)
