"""`POST /v1/messages` (listed in api/routes/table.py) and `/v1/messages/count_tokens` (Anthropic Messages).

The current anthropic SDK may authenticate with `Authorization: Bearer` instead of
`x-api-key`; both map to the same client keys (api/auth.py).
"""

from __future__ import annotations

import orjson
from fastapi import APIRouter
from redis.exceptions import RedisError
from starlette.requests import Request
from starlette.responses import Response

from api.auth import authenticate
from api.dialects import ANTHROPIC
from api.documents import resolve_files
from api.errors import error_response
from api.limits import parse_bounded, read_body
from api.routes.common import serve
from api.state import state_of
from shared.errors import GatewayError
from shared.protocols import anthropic_messages

router = APIRouter()


async def messages(request: Request) -> Response:
    return await serve(request, ANTHROPIC, anthropic_messages.parse_request)


@router.post("/v1/messages/count_tokens")
async def count_tokens(request: Request) -> Response:
    state = state_of(request)
    try:
        client = authenticate(request, state.clients)
        limits = state.config.request_limits
        body = await read_body(request, limits.max_body_bytes, limits.body_read_seconds)
        req = parse_bounded(anthropic_messages.parse_count_tokens_request, body)
        if state.config.model(req.model) is None:
            raise GatewayError("not_found", f"The model '{req.model}' does not exist.", param="model")
        req = await resolve_files(state, client, req)  # a file's document counts as its contents
        counted = orjson.dumps({"input_tokens": anthropic_messages.count_tokens(req)})
        return Response(counted, media_type="application/json")
    except GatewayError as err:
        return error_response(ANTHROPIC, err)
    except RedisError:  # only a file_id document reads Redis here
        return error_response(ANTHROPIC, GatewayError("upstream_unavailable", "The file store is unavailable; "
                                                      "retry shortly.", status=503, retry_after=1.0))
