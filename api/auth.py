"""Client keys: each protocol's own header maps to the same configured keys.

Keys are looked up by their HMAC-SHA-256 under a server secret, never by the key itself: the
process keeps only digests, and what a lookup's timing could depend on is the digest of the
presented key, which a caller without the secret cannot steer towards a real key's digest.
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections.abc import Iterable

from starlette.requests import Request

from shared.config import ClientKey
from shared.errors import GatewayError
from shared.tenants.keystore import KeyRecord


class ClientKeys:
    """Digest of each client key -> the client's (tenant's) name. The plain keys are not kept.

    Two sources: the config's keys, fixed for the process's life, and the ring of keys issued at
    run time (shared/tenants/keystore.py), replaced whole by `replace_ring` whenever it changes.
    """

    __slots__ = ("_names", "_ring", "_secret", "ring_version")

    def __init__(self, keys: Iterable[ClientKey], secret: bytes | None = None) -> None:
        # A per-process random secret is enough while digests never leave the process; the shared
        # secret ($SLUICE_KEY_SECRET) is what lets keys issued at run time be stored in Redis.
        self._secret = secret if secret is not None else secrets.token_bytes(32)
        self._names = {self._config_digest(k): k.name for k in keys}
        self._ring: dict[bytes, KeyRecord] = {}
        self.ring_version = -1

    def _config_digest(self, key: ClientKey) -> bytes:
        return bytes.fromhex(key.key_hmac) if key.key_hmac else self.digest(key.key)

    def digest(self, key: str) -> bytes:
        return hmac.digest(self._secret, key.encode(), "sha256")

    def name_of(self, key: str) -> str | None:
        # The dicts compare digests, not keys: how far a wrong key's digest matches a real one
        # says nothing about the key, so this needs no constant-time loop over every key.
        found = self.digest(key)
        name = self._names.get(found)
        if name is not None:
            return name
        record = self._ring.get(found)
        if record is None or not record.live(time.time() * 1000):
            return None
        return record.tenant

    def replace_ring(self, version: int, ring: dict[bytes, KeyRecord]) -> None:
        if version >= self.ring_version:  # an older snapshot read late never wins
            self._ring, self.ring_version = ring, version

    def __len__(self) -> int:
        return len(self._names) + len(self._ring)


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
