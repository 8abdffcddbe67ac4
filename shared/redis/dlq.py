"""Dead letters: jobs that failed for good, kept with why, for `sluice dlq list|show|replay|purge`.

A job is dead-lettered when retryable upstream faults outlast its retries, when its worker
crashed on it, or when its lease expired `max_attempts` times (claim.lua). Its payload and meta
stay in the account's `jobs`/`meta`; `{acct}:dlq` (ZSET id -> ms) says when it died and
`{acct}:dead` (HASH id -> `DeadLetter`, msgspec JSON) why. This module both writes and reads
that record. Its client was already answered with an error in its own protocol by the worker.
"""

from __future__ import annotations

import msgspec
import redis.asyncio as aioredis

from shared.jobs import Job, decode_job, encode_job
from shared.redis.keys import AccountKeys, Keys
from shared.redis.scripts import source as _source


class DeadLetter(msgspec.Struct, omit_defaults=True):
    job_id: str
    account: str
    reason: str  # a sentence for the operator: what failed
    kind: str = ""  # the error kind the client saw (shared/errors.py)
    status: int = 0  # the last upstream HTTP status (0 = none: a connection error, a crash)
    attempts: int = 0
    dead_ms: int = 0
    model: str = ""


class DeadJob(msgspec.Struct):
    """What `sluice dlq show` prints: the why, and the job (its request) when still readable."""

    letter: DeadLetter
    job: Job | None


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(DeadLetter)


def encode(letter: DeadLetter) -> bytes:
    return _encoder.encode(letter)


def decode(raw: bytes) -> DeadLetter:
    return _decoder.decode(raw)



class DeadLetters:
    def __init__(self, client: aioredis.Redis, keys: Keys) -> None:
        self.redis = client
        self.keys = keys
        self._dead = client.register_script(_source("dead_letter"))
        self._replay = client.register_script(_source("dlq_replay"))
        self._purge = client.register_script(_source("dlq_purge"))

    async def dead_letter(self, keys: AccountKeys, letter: DeadLetter) -> bool:
        """Moves a claimed job to the dead-letter set (False: its lease was lost, not ours)."""
        return bool(await self._dead(keys=[keys.inflight, keys.dlq, keys.dead, keys.stats],
                                     args=[letter.job_id, encode(letter)]))

    async def note(self, keys: AccountKeys, letter: DeadLetter) -> None:
        """Says why, for a job claim.lua already dead-lettered (lease expired too often)."""
        await self.redis.hset(keys.dead, letter.job_id, encode(letter))  # type: ignore[misc, arg-type]

    async def list(self, account: str) -> list[DeadLetter]:
        keys = self.keys.account(account)
        ids = await self.redis.zrange(keys.dlq, 0, -1, withscores=True)
        if not ids:
            return []
        raws = await self.redis.hmget(keys.dead, [i for i, _ in ids])  # type: ignore[misc]
        letters = []
        for (job_id, score), raw in zip(ids, raws, strict=True):
            letter = decode(raw) if raw else DeadLetter(job_id.decode(), account, "lease expired too often")
            letter.dead_ms = letter.dead_ms or int(score)
            letters.append(letter)
        return letters

    async def show(self, account: str, job_id: str) -> DeadJob | None:
        for letter in await self.list(account):
            if letter.job_id == job_id:
                payload = await self.redis.hget(self.keys.account(account).jobs, job_id)  # type: ignore[misc]
                try:
                    job = decode_job(payload) if payload else None
                except msgspec.DecodeError:
                    job = None
                return DeadJob(letter, job)
        return None

    async def replay(self, account: str, job_id: str, max_wait_ms: int, now_ms: int) -> bool:
        """Queues the job again with a fresh deadline. Its old record is dropped (the new run writes
        its own from the start) and nobody waits on a reply channel: the answer lands in the record."""
        keys = self.keys.account(account)
        payload = await self.redis.hget(keys.jobs, job_id)  # type: ignore[misc]
        if payload is None or await self.redis.zscore(keys.dlq, job_id) is None:
            return False
        job = decode_job(payload)
        job = msgspec.structs.replace(job, reply_to="", enqueued_ms=now_ms, deadline_ms=now_ms + max_wait_ms)
        await self.redis.delete(self.keys.out(job_id))
        return bool(await self._replay(keys=[keys.ready, keys.jobs, keys.meta, keys.dlq, keys.dead, keys.bell,
                                             keys.bready],
                                       args=[job_id, encode_job(job)]))

    async def purge(self, account: str, job_id: str) -> bool:
        keys = self.keys.account(account)
        return bool(await self._purge(keys=[keys.jobs, keys.meta, keys.dlq, keys.dead], args=[job_id]))
