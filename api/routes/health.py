"""`/healthz` (process up), `/readyz` (Redis reachable, a live worker somewhere), `/v1/models`."""

from __future__ import annotations

import time

import orjson
from fastapi import APIRouter
from redis.exceptions import RedisError
from starlette.requests import Request
from starlette.responses import Response

from api.admin.auth import bearer, token_matches
from api.auth import authenticate
from api.dialects import ANTHROPIC, GEMINI, OPENAI_CHAT
from api.errors import error_response
from api.state import state_of
from shared.errors import GatewayError
from shared.protocols import gemini
from shared.status import WORKER_STALE_MS

router = APIRouter()


@router.get("/healthz")
async def healthz() -> Response:
    return Response(b'{"status":"ok"}', media_type="application/json")


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    """Prometheus text format; no client key, and the admin token only with
    `security.metrics_token: true` (otherwise expose it internally only)."""
    state = state_of(request)
    if state.config.security.metrics_token and not token_matches(state.admin_token, bearer(request)):
        return Response(b"admin token required\n", 401, media_type="text/plain")
    body = await state.metrics.render(state.config, state.redis)
    return Response(body, media_type="text/plain; version=0.0.4")


@router.get("/readyz")
async def readyz(request: Request) -> Response:
    state = state_of(request)
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
@router.get("/v1beta/models")
async def models(request: Request) -> Response:
    """The model list in the shape of whichever SDK is asking (told apart by its auth header)."""
    state = state_of(request)
    headers = request.headers
    is_gemini = request.url.path.startswith("/v1beta") or "x-goog-api-key" in headers or \
        "key" in request.query_params
    dialect = GEMINI if is_gemini else ANTHROPIC if "anthropic-version" in headers else OPENAI_CHAT
    try:
        client = authenticate(request, state.clients)
    except GatewayError as err:
        return error_response(dialect, err)
    tenancy = state.tenancy
    names = [m.name for m in state.config.models if tenancy is None or tenancy.allows(client, m.name)]
    if dialect is GEMINI:
        embedding = frozenset(m.name for m in state.config.models if m.kind == "embedding")
        return Response(gemini.list_models(names, embedding), media_type="application/json")
    if dialect is ANTHROPIC:
        data: list[dict[str, object]] = [
            {"type": "model", "id": n, "display_name": n, "created_at": "2025-01-01T00:00:00Z"} for n in names]
        body = {"data": data, "has_more": False, "first_id": names[0] if names else None,
                "last_id": names[-1] if names else None}
        return Response(orjson.dumps(body), media_type="application/json")
    data = [{"id": n, "object": "model", "created": 0, "owned_by": "sluice"} for n in names]
    return Response(orjson.dumps({"object": "list", "data": data}), media_type="application/json")
