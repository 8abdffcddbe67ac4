"""Client keys: each protocol's own header maps to the same configured keys.

Keys are looked up by their HMAC-SHA-256 under a server secret, never by the key itself: the
process keeps only digests, and what a lookup's timing could depend on is the digest of the
presented key, which a caller without the secret cannot steer towards a real key's digest.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Iterable

from starlette.requests import Request

from shared.config import ClientKey
from shared.errors import GatewayError


class ClientKeys:
    """Digest of each configured client key -> the client's name. The plain keys are not kept."""

    __slots__ = ("_names", "_secret")

    def __init__(self, keys: Iterable[ClientKey], secret: bytes | None = None) -> None:
        # A per-process random secret is enough while digests never leave the process; a shared
        # secret (from config) lets digests be stored elsewhere, e.g. keys issued through an API.
        self._secret = secret if secret is not None else secrets.token_bytes(32)
        self._names = {self.digest(k.key): k.name for k in keys}

    def digest(self, key: str) -> bytes:
        return hmac.digest(self._secret, key.encode(), "sha256")

    def name_of(self, key: str) -> str | None:
        # The dict compares digests, not keys: how far a wrong key's digest matches a real one
        # says nothing about the key, so this needs no constant-time loop over every key.
        return self._names.get(self.digest(key))

    def __len__(self) -> int:
        return len(self._names)


def presented_key(request: Request) -> str | None:
    auth = request.headers.get("authorization")
    if auth and auth[:7].lower() == "bearer ":
        return auth[7:].strip()
    return (
        request.headers.get("x-api-key")
        or request.headers.get("x-goog-api-key")
        or request.query_params.get("key")
    )


def authenticate(request: Request, clients: ClientKeys) -> str:
    """Returns the client's name, or raises 401. Unknown keys are never echoed back."""
    key = presented_key(request)
    name = clients.name_of(key) if key else None
    if name is None:
        raise GatewayError("unauthenticated", "Incorrect or missing API key.")
    return name
