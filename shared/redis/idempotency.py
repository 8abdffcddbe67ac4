"""The Idempotency-Key record: which job a client's key names, and for which body.

Contract (every reader and writer goes through this module):

    key     {p}:idem:{<sha256(client name, key)[:32]>}   one STRING per (client, key), with the
            configured `idempotency_ttl_seconds`; the hash tag is the whole digest, so the one
            script that decides first-vs-retry touches a single slot
    value   <job id>|<body digest>     the job that answers every request with this key, and the
            sha256 of the request it answers (a retry with another body is a conflict)

`idempotency.lua` is the only writer: `claim` stores the value unless one is there (and returns
the stored one), `release` deletes it if it still names the given job (a job withdrawn before it
ran, so a retry starts afresh).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources

import redis.asyncio as aioredis


def _script_source() -> str:
    return (resources.files("shared.redis") / "lua" / "idempotency.lua").read_text()


def key_of(prefix: str, client: str, idempotency_key: str) -> str:
    digest = hashlib.sha256(f"{client}\x00{idempotency_key}".encode()).hexdigest()[:32]
    return f"{prefix}:idem:{{{digest}}}"


def body_digest(parts: bytes) -> str:
    return hashlib.sha256(parts).hexdigest()


@dataclass(frozen=True, slots=True)
class Original:
    """The request that first used a key."""

    job_id: str
    digest: str

    def encode(self) -> str:
        return f"{self.job_id}|{self.digest}"

    @classmethod
    def decode(cls, raw: bytes | str) -> Original:
        text = raw.decode() if isinstance(raw, bytes) else raw
        job_id, sep, digest = text.partition("|")
        if not sep:
            raise ValueError(f"not an idempotency record: {text!r}")
        return cls(job_id, digest)


class IdempotencyStore:
    def __init__(self, client: aioredis.Redis) -> None:
        self._script = client.register_script(_script_source())

    async def claim(self, key: str, mine: Original, ttl_seconds: int) -> Original | None:
        """None when this request is the first with the key (it now names `mine`), else the original."""
        held = await self._script(keys=[key], args=["claim", mine.encode(), int(ttl_seconds * 1000)])
        return None if held is None else Original.decode(held)

    async def release(self, key: str, job_id: str) -> bool:
        """Forgets the key if it still names `job_id`; True when it did."""
        return bool(await self._script(keys=[key], args=["release", job_id, 0]))
