"""Pulling queued work off sibling accounts that cannot serve it (a worker's second task).

A job is routed to one account at enqueue. If that account then cannot start it — its key is
refused (a five-minute block), it is cooled down or blocked by the provider for longer than
`STRANDED_BLOCK_MS`, or no worker of it has heartbeated for a while — its queued jobs would wait
out their deadline while a sibling sits idle. So every worker, while its own account is healthy
and its own queue short, looks at the siblings that serve one of its models and pulls their
queued jobs over with the three-step move in shared/redis/moves.py (Cluster-safe, never lost,
never doubled). A sibling with no live worker also has nobody to re-queue the jobs its dead
workers were running when their leases expire (claim.lua does that, and only its own workers call
it): the puller runs that step for it (a claim of zero jobs), so those jobs are pulled over too.
Pulling, not pushing: an account with no live worker cannot push, and the puller is by
construction an account that is up. Both lanes move: interactive jobs first, then batch
lines, each onto the same lane here (a batch line stays batch work and its batch still records it
done once: worker/batcher/runner.py follows the move). Each tick also finishes moves whose mover
died midway.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

import msgspec
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from shared.config import Account, Config
from shared.jobs import Job, decode_job
from shared.redis.keys import Keys
from shared.redis.moves import Moves
from shared.redis.scripts import LimitArgs, Scripts

log = logging.getLogger("sluice.worker")

PERIOD_SECONDS = 0.5
STRANDED_BLOCK_MS = 2000  # a block shorter than this is a limiter pause, not worth a move
STALE_MOVE_MS = 5000  # a move unfinished for this long: its mover died, finish it
BATCH = 32  # jobs looked at per sibling per tick


def rewrite_for(config: Config) -> Callable[[Job, str], Job | None]:
    """The job as `target` would run it: its account and the upstream model of its route there."""

    def rewrite(job: Job, target: str) -> Job | None:
        model = config.model(job.request.model)
        if model is None:
            return None
        for route in model.route:
            if route.account == target:
                return msgspec.structs.replace(job, account=target, upstream_model=route.model)
        return None

    return rewrite


def siblings_of(config: Config, account: str) -> list[str]:
    """Accounts that share at least one model with `account` (in config order)."""
    found: list[str] = []
    for model in config.models:
        names = [r.account for r in model.route]
        if account in names:
            found += [n for n in names if n != account and n not in found]
    return found


OnDead = Callable[[str, str, bytes], Awaitable[None]]  # (account, job id, payload): answer its client


class Rebalancer:
    def __init__(self, config: Config, account: Account, client: aioredis.Redis, on_dead: OnDead) -> None:
        self.config = config
        self.on_dead = on_dead
        self.scripts = Scripts(client)
        self.account = account
        self.redis = client
        self.keys = Keys(config.key_prefix)
        self.moves = Moves(client, self.keys)
        self.siblings = siblings_of(config, account.name)
        self.rewrite = rewrite_for(config)
        self.liveness_ms = config.queue.liveness_ms()
        self.pulled = 0

    async def run(self, stopping: asyncio.Event) -> None:
        if not self.siblings:
            return
        while not stopping.is_set():
            try:
                await self.tick()
            except RedisError as exc:  # Redis away: the claim loop waits for it; so do we
                log.warning("rebalance skipped", extra={"account": self.account.name, "error": type(exc).__name__})
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), PERIOD_SECONDS)  # the rebalancer's period

    async def tick(self) -> int:
        """One pass: finish stale moves, then pull from stranded siblings. Returns jobs pulled."""
        now_ms = await self._now_ms()
        for name in (self.account.name, *self.siblings):
            await self.moves.finish_stale(name, STALE_MOVE_MS, now_ms, self.rewrite)
        me = self.keys.account(self.account.name)
        pipe = self.redis.pipeline(transaction=False)
        pipe.hget(me.rl, "blocked")
        pipe.zcard(me.ready)
        pipe.zcard(me.bready)
        for name in self.siblings:
            keys = self.keys.account(name)
            pipe.hget(keys.rl, "blocked")
            pipe.zcard(keys.ready)
            pipe.zcard(keys.bready)
            pipe.zrange(keys.workers, -1, -1, withscores=True)
        replies = await pipe.execute()
        enough = self.account.limits.concurrency or BATCH  # concurrency 0: unlimited
        if float(replies[0] or 0) > now_ms or int(replies[1]) + int(replies[2]) >= enough:
            return 0  # not a good home right now, or enough work of our own
        pulled = 0
        for i, name in enumerate(self.siblings):
            blocked, depth, bdepth, newest = replies[3 + 4 * i: 7 + 4 * i]
            alive = bool(newest) and now_ms - float(newest[0][1]) < self.liveness_ms
            if not alive:
                await self._requeue_expired(name)
            if not depth and not bdepth and alive:
                continue
            if alive and float(blocked or 0) - now_ms < STRANDED_BLOCK_MS:
                continue
            pulled += await self._pull(name)
        self.pulled += pulled
        return pulled

    async def _requeue_expired(self, source: str) -> None:
        """Puts the jobs whose lease ran out on `source` (their workers died) back in its queue,
        where `_pull` finds them; one past its attempts is dead-lettered and its client answered."""
        account = self.config.account(source)
        result = await self.scripts.claim(self.keys.account(source), LimitArgs.of(account), self.config.queue, 0)
        for job_id, payload in result.dead:
            await self.on_dead(source, job_id, payload)

    async def _pull(self, source: str) -> int:
        """Up to BATCH of `source`'s head jobs, interactive lane first, then batch lines."""
        keys = self.keys.account(source)
        ids = await self.redis.zrange(keys.ready, 0, BATCH - 1)
        if len(ids) < BATCH:
            ids += await self.redis.zrange(keys.bready, 0, BATCH - 1 - len(ids))
        if not ids:
            return 0
        payloads = await self.redis.hmget(keys.jobs, ids)  # type: ignore[misc]
        pulled = 0
        for payload in payloads:
            if payload is None:
                continue  # claimed or cancelled since the read
            try:
                job = decode_job(payload)
            except msgspec.DecodeError:
                continue
            if await self.moves.move(job, source, self.account.name, self.rewrite):
                pulled += 1
        if pulled:
            log.warning("pulled queued jobs from a stranded account",
                        extra={"account": self.account.name, "from": source, "jobs": pulled})
        return pulled

    async def _now_ms(self) -> int:
        seconds, micros = await self.redis.time()
        return int(seconds) * 1000 + int(micros) // 1000
