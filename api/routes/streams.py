"""`GET /v1/streams/{id}`: resume a stream (the URL every stream names in x-sluice-stream-url)."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from api.auth import authenticate
from api.dialects import OPENAI_CHAT
from api.errors import error_response
from api.resume import parse_event_id, resume
from api.state import state_of
from shared.errors import GatewayError, invalid

router = APIRouter()


@router.get("/v1/streams/{job_id}")
async def resume_stream(job_id: str, request: Request) -> Response:
    state = state_of(request)
    try:
        client = authenticate(request, state.clients)
        last_event_id = request.headers.get("last-event-id")
        after = None
        if last_event_id:
            event_job, seq, n = parse_event_id(last_event_id)
            if event_job != job_id:
                raise invalid("Last-Event-ID belongs to another stream.", "Last-Event-ID")
            after = (seq, n)
        return await resume(state, client, job_id, after, OPENAI_CHAT)
    except GatewayError as err:
        return error_response(OPENAI_CHAT, err)
