"""Client keys issued at run time: made, listed, rotated, expired and revoked here, by the admin
API and by `sluice keys` alike.

Only the key's HMAC-SHA-256 under the server's key secret is stored (as the hash field); the
plain key exists once, in the answer to `create` / `rotate`. Every change is one run of
keyring.lua, which bumps a version and publishes it, so each API process reloads the ring at
once (api/keysync.py), and within a poll interval if it missed the message.
"""

from __future__ import annotations

import hmac
import secrets
import time

import msgspec
import redis.asyncio as aioredis

from shared.redis.client import is_cluster
from shared.redis.keys import Keys
from shared.redis.scripts import source

KEY_PREFIX = "sk-sluice-"


class KeyRecord(msgspec.Struct, frozen=True, omit_defaults=True):
    id: str  # public handle ("key_…"): what lists show and what revoke/rotate take
    tenant: str
    created_ms: int
    expires_ms: int = 0  # 0: never
    hint: str = ""  # the key's last four characters, to tell keys apart in a list
    rotated_to: str = ""  # the id of the key that replaced this one

    def live(self, now_ms: float) -> bool:
        return self.expires_ms == 0 or now_ms < self.expires_ms


_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(KeyRecord).decode


def digest(secret: bytes, key: str) -> bytes:
    return hmac.digest(secret, key.encode(), "sha256")


class KeyStore:
    def __init__(self, client: aioredis.Redis, keys: Keys, secret: bytes) -> None:
        self.redis = client
        self.keys = keys.keyring()
        self._secret = secret
        self._script = client.register_script(source("keyring"))

    def digest(self, key: str) -> bytes:
        return digest(self._secret, key)

    async def create(self, tenant: str, expires_in: float | None = None) -> tuple[str, KeyRecord]:
        """A new key for `tenant`: (the plain key, shown only now; its record)."""
        plain, record = self._new(tenant, expires_in)
        await self._run("put", [self.digest(plain).hex(), record.id, _encode(record)])
        return plain, record

    async def rotate(self, key_id: str, overlap_seconds: float) -> tuple[str, KeyRecord] | None:
        """A new key for the same tenant; the old one keeps working for `overlap_seconds` more."""
        found = await self._get(key_id)
        if found is None:
            return None
        old_digest, old = found
        plain, record = self._new(old.tenant, None)
        until = int(time.time() * 1000 + overlap_seconds * 1000)
        expires = until if old.expires_ms == 0 else min(old.expires_ms, until)
        retired = msgspec.structs.replace(old, expires_ms=expires, rotated_to=record.id)
        await self._run("put", [self.digest(plain).hex(), record.id, _encode(record),
                                old_digest, old.id, _encode(retired)])
        return plain, record

    async def expire(self, key_id: str, at_ms: int) -> KeyRecord | None:
        found = await self._get(key_id)
        if found is None:
            return None
        record = msgspec.structs.replace(found[1], expires_ms=at_ms)
        await self._run("put", [found[0], key_id, _encode(record)])
        return record

    async def revoke(self, key_id: str) -> bool:
        return await self._run("del", [key_id]) > 0

    async def all(self) -> list[KeyRecord]:
        return sorted(self.decode_all(await self.redis.hgetall(self.keys.keys)).values(),  # type: ignore[misc]
                      key=lambda r: (r.tenant, r.created_ms))

    async def snapshot(self) -> tuple[int, dict[bytes, KeyRecord]]:
        """(version, digest -> record), read together. Not with MULTI (a Cluster client has no
        transactions): the version is read before and after the ring, in one round trip; every
        change bumps it in the same script, so equal versions mean no change fell in between."""
        while True:
            pipe = self.redis.pipeline(transaction=False)
            pipe.get(self.keys.version)
            pipe.hgetall(self.keys.keys)
            pipe.get(self.keys.version)
            before, raw, after = await pipe.execute()
            if before == after:
                return int(before or 0), {bytes.fromhex(d.decode()): r for d, r in self.decode_all(raw).items()}

    async def version(self) -> int:
        return int(await self.redis.get(self.keys.version) or 0)

    @staticmethod
    def decode_all(raw: dict[bytes, bytes]) -> dict[bytes, KeyRecord]:
        return {d: _decode(r) for d, r in raw.items()}

    def _new(self, tenant: str, expires_in: float | None) -> tuple[str, KeyRecord]:
        plain = KEY_PREFIX + secrets.token_urlsafe(32)
        now = int(time.time() * 1000)
        expires = now + int(expires_in * 1000) if expires_in else 0
        return plain, KeyRecord(id=f"key_{secrets.token_hex(8)}", tenant=tenant, created_ms=now,
                                expires_ms=expires, hint=plain[-4:])

    async def _get(self, key_id: str) -> tuple[str, KeyRecord] | None:
        found = await self.redis.hget(self.keys.ids, key_id)  # type: ignore[misc]
        if found is None:
            return None
        raw = await self.redis.hget(self.keys.keys, found)  # type: ignore[misc]
        return None if raw is None else (found.decode(), _decode(raw))

    async def _run(self, op: str, args: list[str | bytes]) -> int:
        how = "SPUBLISH" if is_cluster(self.redis) else "PUBLISH"
        return int(await self._script(keys=[self.keys.keys, self.keys.ids, self.keys.version],
                                      args=[self.keys.changed, how, op, *args]))
