"""Client keys: each protocol's own header maps to the same configured keys."""

from __future__ import annotations

import hmac

from starlette.requests import Request

from shared.errors import GatewayError


def presented_key(request: Request) -> str | None:
    auth = request.headers.get("authorization")
    if auth and auth[:7].lower() == "bearer ":
        return auth[7:].strip()
    return (
        request.headers.get("x-api-key")
        or request.headers.get("x-goog-api-key")
        or request.query_params.get("key")
    )


def authenticate(request: Request, clients: dict[str, str]) -> str:
    """Returns the client's name, or raises 401. Unknown keys are never echoed back."""
    key = presented_key(request)
    if key:
        name = clients.get(key)
        if name is not None:
            return name
        # constant-time comparison against every key, so timing reveals nothing about near misses
        for known, known_name in clients.items():
            if hmac.compare_digest(known.encode(), key.encode()):
                return known_name
    raise GatewayError("unauthenticated", "Incorrect or missing API key.")
