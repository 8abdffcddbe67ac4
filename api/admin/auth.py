"""The admin token: `Authorization: Bearer <token>`, compared in constant time.

With no token configured the admin API refuses every call (the API process itself refuses to
start on a non-loopback address without one: shared/cli.py).
"""

from __future__ import annotations

import hashlib
import hmac

from fastapi import HTTPException, Request

from api.state import state_of


def token_matches(expected: str | None, presented: str | None) -> bool:
    if not expected or not presented:
        return False
    # Digests first: compare_digest is constant-time only for inputs of equal length.
    return hmac.compare_digest(hashlib.sha256(expected.encode()).digest(),
                               hashlib.sha256(presented.encode()).digest())


def bearer(request: Request) -> str | None:
    auth = request.headers.get("authorization", "")
    return auth[7:].strip() if auth[:7].lower() == "bearer " else None


def require_admin(request: Request) -> None:
    """FastAPI dependency for every admin route."""
    state = state_of(request)
    if state.admin_token is None:
        raise HTTPException(401, "The admin API is disabled: set SLUICE_ADMIN_TOKEN (or a token file).")
    if not token_matches(state.admin_token, bearer(request)):
        raise HTTPException(401, "Missing or wrong admin token.")
