"""Moving a queued job to another account, so no job is stranded on an account that cannot serve it.

Each account's keys share its hash tag, so a move across accounts cannot be one script (on Redis
Cluster the two queues live on different slots). It is three, each atomic on one account:

    1 move_out.lua  (source)  its lane (ready or bready) -> moving[id] = "<target>|<hop>|<ms>";
                              payload and meta (with the lane mark "<id>:l") stay.
                              Atomic with claim.lua and cancel.lua there: the job is claimed,
                              cancelled or moved, exactly one of the three.
    2 adopt.lua     (target)  queue the rewritten job on the same lane (a batch line stays batch
                              work), unless "<id>:<hop>" is already in `adopted`.
    3 move_done.lua (source)  drop moving[id] and the payload; moved[id] = target (cancel follows it).

Nothing is lost: until step 3 the source still holds everything, and step 3 runs only after step 2
answered. Nothing runs twice: after step 1 the job is in no ready queue but the target's, and
step 2 is idempotent per hop (`hop` = the job's `moves` + 1, so every hop of one job has its own
mark, even a move back to an account it once left). A mover that dies between the steps leaves
`moving[id]`; `finish_stale` (any process) replays steps 2 and 3 from it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import msgspec
import redis.asyncio as aioredis

from shared.jobs import Job, decode_job, encode_job
from shared.redis.keys import Keys
from shared.redis.scripts import source as _source

# What a job becomes on `target` (its account and the upstream model there); None: it cannot go there.
Rewrite = Callable[[Job, str], Job | None]



@dataclass(frozen=True, slots=True)
class Moving:
    """One `moving` entry: a job that left `source`'s queue for `target` (codec of the field)."""

    job_id: str
    target: str
    hop: int
    since_ms: int

    @classmethod
    def decode(cls, job_id: bytes | str, value: bytes | str) -> Moving:
        text = value.decode() if isinstance(value, bytes) else value
        target, hop, since = text.rsplit("|", 2)
        return cls(job_id.decode() if isinstance(job_id, bytes) else job_id, target, int(hop), int(since))


class Moves:
    def __init__(self, client: aioredis.Redis, keys: Keys) -> None:
        self.redis = client
        self.keys = keys
        self._out = client.register_script(_source("move_out"))
        self._adopt = client.register_script(_source("adopt"))
        self._done = client.register_script(_source("move_done"))

    async def move(self, job: Job, source: str, target: str, rewrite: Rewrite) -> bool:
        """Moves `job` (as read from `source`'s queue) to `target`; False when it was no longer
        queued there (a worker or another mover got it first) or cannot go to `target`."""
        moved = rewrite(job, target)
        if moved is None:
            return False
        hop = job.moves + 1
        src = self.keys.account(source)
        if not await self._out(keys=[src.ready, src.moving, src.bready], args=[job.id, target, hop]):
            return False
        await self._finish(source, Moving(job.id, target, hop, 0), moved)
        return True

    async def finish_stale(self, source: str, older_than_ms: int, now_ms: int, rewrite: Rewrite) -> int:
        """Completes moves out of `source` whose mover stopped between the steps; how many."""
        entries = await self.redis.hgetall(self.keys.account(source).moving)  # type: ignore[misc]
        finished = 0
        for raw_id, raw in entries.items():
            entry = Moving.decode(raw_id, raw)
            if now_ms - entry.since_ms < older_than_ms:
                continue  # its mover is probably still at it (and finishing twice is harmless anyway)
            payload = await self.redis.hget(self.keys.account(source).jobs, entry.job_id)  # type: ignore[misc]
            if payload is None:
                continue
            try:
                moved = rewrite(decode_job(payload), entry.target)
            except msgspec.DecodeError:
                moved = None
            if moved is None:
                continue  # left in `moving`, visible to `sluice status`; never guessed at
            await self._finish(source, entry, moved)
            finished += 1
        return finished

    async def _finish(self, source: str, entry: Moving, moved: Job) -> None:
        src, dst = self.keys.account(source), self.keys.account(entry.target)
        pipe = self.redis.pipeline(transaction=False)
        pipe.hget(src.meta, entry.job_id)
        pipe.hget(src.meta, f"{entry.job_id}:s")
        pipe.hget(src.meta, f"{entry.job_id}:a")
        pipe.hexists(src.meta, f"{entry.job_id}:l")  # a batch line: it stays on the batch lane
        cost, rank, attempts, batch = await pipe.execute()
        moved.moves = entry.hop
        await self._adopt(keys=[dst.ready, dst.jobs, dst.meta, dst.bell, dst.adopted, dst.moved, dst.moved_at,
                                dst.bready],
                          args=[entry.job_id, entry.hop, encode_job(moved), cost or b"0:0",
                                rank or moved.enqueued_ms, attempts or 0, int(bool(batch))])
        await self._done(keys=[src.jobs, src.meta, src.moving, src.moved, src.moved_at],
                         args=[entry.job_id, entry.target])

    async def moved_to(self, source: str, job_id: str) -> str | None:
        """The account a job moved to from `source`, if it did (within the last day)."""
        target = await self.redis.hget(self.keys.account(source).moved, job_id)  # type: ignore[misc]
        return None if target is None else target.decode()

    async def follow(self, source: str, job_id: str, max_hops: int) -> str:
        """The account a job that was queued on `source` lives on now: `source` itself unless it
        moved; a chain of moves is followed for at most `max_hops`."""
        account = source
        for _ in range(max_hops):
            target = await self.moved_to(account, job_id)
            if target is None or target == account:
                break
            account = target
        return account
