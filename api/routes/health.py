"""`/healthz` (process up), `/readyz` (Redis reachable, a live worker somewhere), `/v1/models`."""

from __future__ import annotations

import time

import orjson
from fastapi import APIRouter
from redis.exceptions import RedisError
from starlette.requests import Request
from starlette.responses import Response

from api.auth import authenticate
from api.dialects import OPENAI_CHAT
from api.relay import AppState, error_response
from shared.errors import GatewayError

router = APIRouter()

WORKER_STALE_MS = 60_000


@router.get("/healthz")
async def healthz() -> Response:
    return Response(b'{"status":"ok"}', media_type="application/json")


@router.get("/readyz")
async def readyz(request: Request) -> Response:
    state: AppState = request.app.state.sluice
    keys = state.dispatcher.keys
    try:
        pipe = state.redis.pipeline(transaction=False)
        since = time.time() * 1000 - WORKER_STALE_MS
        for account in state.config.accounts:
            pipe.zcount(keys.account(account.name).workers, since, "+inf")
        counts = await pipe.execute()
    except (RedisError, OSError):
        return Response(b'{"status":"unavailable","redis":false}', 503, media_type="application/json")
    live = {a.name: int(c) for a, c in zip(state.config.accounts, counts, strict=True)}
    ready = any(live.values())
    body = orjson.dumps({"status": "ready" if ready else "no_workers", "redis": True, "workers": live})
    return Response(body, 200 if ready else 503, media_type="application/json")


@router.get("/v1/models")
async def models(request: Request) -> Response:
    state: AppState = request.app.state.sluice
    try:
        authenticate(request, state.clients)
    except GatewayError as err:
        return error_response(OPENAI_CHAT, err)
    data = [{"id": m.name, "object": "model", "created": 0, "owned_by": "sluice"} for m in state.config.models]
    return Response(orjson.dumps({"object": "list", "data": data}), media_type="application/json")
