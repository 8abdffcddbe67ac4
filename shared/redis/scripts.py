"""The Lua scripts, loaded once from `lua/*.lua`, behind typed async wrappers.

Each script is one atomic step of the queue; callers never write EVAL. `limiter.lua` is a
prelude shared by the scripts that consult or adjust an account's limits.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum, StrEnum
from importlib import resources
from typing import Any, Final

import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError, RedisClusterException

from shared.config import Account, QueueSettings
from shared.redis.client import is_cluster
from shared.redis.keys import AccountKeys


def _source(name: str) -> str:
    lua = resources.files("shared.redis") / "lua"
    prelude = (lua / "limiter.lua").read_text()
    return prelude + "\n" + (lua / f"{name}.lua").read_text()


def source(name: str) -> str:
    """A script's source with the shared prelude, for scripts wrapped outside this module."""
    return _source(name)


class ClaimCode(IntEnum):
    """Why claim.lua stopped handing out jobs (its first return value)."""

    CLAIMED = 0  # it claimed what there was (fewer than asked: the queue is now empty)
    LIMITER_WAIT = 1  # the head job waits `wait_ms` for the limiter
    CONCURRENCY_FULL = 2  # every slot is taken: wait for a release
    BLOCKED = 3  # the account is blocked for `wait_ms`


class Outcome(StrEnum):
    """How a claimed job ended (ack.lua counts it under this name)."""

    COMPLETED = "completed"
    FAILED = "failed"
    EXPIRED = "expired"  # its client's deadline passed before it started
    ABORTED = "aborted"  # its client left while it ran: the upstream call was cut off


# enqueue.lua's answer when the account's queue is at its cap (otherwise: the depth, >= 1).
QUEUE_FULL: Final = -1


@dataclass(frozen=True, slots=True)
class ClaimResult:
    code: ClaimCode
    wait_ms: int
    claimed: list[tuple[str, bytes, int]]  # (job id, payload, attempts so far)
    dead: list[tuple[str, bytes]]  # jobs moved to the dead-letter queue by this call


CLAIM_SLACK_MS = 25


@dataclass(frozen=True, slots=True)
class LimitArgs:
    """An account's limits as the scripts take them (0 = unlimited)."""

    rpm: int
    tpm: int
    input_tpm: int
    output_tpm: int
    concurrency: int
    request_tolerance_ms: int
    token_tolerance_ms: int
    # How much further ahead of its slot a fresh job (a tenant's that is not backlogged) may start
    # than a backlogged one (claim.lua): one emission interval lets it start at once on a
    # saturated account instead of waiting for the slot the flood would take. Capped like the
    # slack, so a fresh job starts at most CLAIM_SLACK_MS earlier than the pacing alone allows.
    fair_headroom_ms: int = 0

    @classmethod
    def of(cls, account: Account) -> LimitArgs:
        lim = account.limits
        return cls(
            rpm=lim.rpm or 0,
            tpm=lim.tpm or 0,
            input_tpm=lim.input_tpm or 0,
            output_tpm=lim.output_tpm or 0,
            concurrency=lim.concurrency,
            # Pace requests evenly (no burst): providers enforce over windows far shorter than
            # a minute, and a burst is what trips them. The slack (at most one interval, so at
            # most two requests ever start back to back) only absorbs the claimer's own lateness
            # (timer rounding, the claim's round trip, a busy CPU): without it every claim lands
            # that late and the next is paced from there, which at 6,000 rpm (10 ms apart) cost
            # ~15 % of the rate.
            request_tolerance_ms=min(CLAIM_SLACK_MS, 60_000 // lim.rpm) if lim.rpm else 0,
            token_tolerance_ms=0,
            fair_headroom_ms=min(CLAIM_SLACK_MS, 60_000 // lim.rpm) if lim.rpm else CLAIM_SLACK_MS,
        )

    def rates(self) -> list[int]:
        return [self.rpm, self.tpm, self.input_tpm, self.output_tpm]


class Scripts:
    def __init__(self, client: aioredis.Redis) -> None:
        self._enqueue = client.register_script(_source("enqueue"))
        self._publish = "SPUBLISH" if is_cluster(client) else "PUBLISH"  # how enqueue.lua nudges workers
        self._claim = client.register_script(_source("claim"))
        self._ack = client.register_script(_source("ack"))
        self._release = client.register_script(_source("release"))
        self._block = client.register_script(_source("block"))
        self._heartbeat = client.register_script(_source("heartbeat"))
        self._cancel = client.register_script(_source("cancel"))
        self._learn = client.register_script(_source("learn"))

    async def enqueue(
        self, keys: AccountKeys, job_id: str, payload: bytes, cost: tuple[int, int], batch: bool, max_depth: int,
        pipe: Pipeline | None = None, tenant: str = "", weight: float = 1.0,
    ) -> int:
        """The lane's depth including this job, or QUEUE_FULL when the lane is full (with `pipe`:
        queued only). `tenant` and its `weight` set the job's fair share of the interactive lane."""
        result = await self._call(
            self._enqueue,
            [keys.ready, keys.jobs, keys.meta, keys.bell, keys.bready],
            [job_id, payload, f"{cost[0]}:{cost[1]}", 1 if batch else 0, max_depth, tenant, f"{1 / weight:.3f}",
             keys.nudge, self._publish],
            pipe,
        )
        return int(result) if pipe is None else 0

    def enqueue_in_pipeline(self, pipe: Pipeline, keys: AccountKeys, job_id: str, payload: bytes,
                            cost: tuple[int, int], batch: bool, max_depth: int, tenant: str = "",
                            weight: float = 1.0) -> None:
        """`enqueue` queued as a bare EVALSHA (see ack_in_pipeline): a stream's enqueue shares its
        round trip with the replay metadata, and the Script object's SCRIPT EXISTS would add one
        more round trip per stream. The caller must check for NoScriptError (see is_noscript)."""
        keys_list = [keys.ready, keys.jobs, keys.meta, keys.bell, keys.bready]
        args: list[Any] = [job_id, payload, f"{cost[0]}:{cost[1]}", 1 if batch else 0, max_depth, tenant,
                           f"{1 / weight:.3f}"]
        pipe.evalsha(self._enqueue.sha, len(keys_list), *keys_list, *args)

    async def claim(
        self, keys: AccountKeys, limits: LimitArgs, queue: QueueSettings, max_jobs: int
    ) -> ClaimResult:
        code, wait, flat, dead_flat = await self._call(
            self._claim,
            [keys.ready, keys.inflight, keys.jobs, keys.meta, keys.rl, keys.dlq, keys.stats, keys.bell, keys.bready],
            [
                int(queue.lease_seconds * 1000),
                max_jobs,
                *limits.rates(),
                limits.concurrency,
                queue.max_attempts,
                limits.request_tolerance_ms,
                limits.token_tolerance_ms,
                round(queue.batch_min_share * 1000),
                limits.fair_headroom_ms,
            ],
        )
        claimed = [(_s(flat[i]), flat[i + 1], int(flat[i + 2])) for i in range(0, len(flat), 3)]
        dead = [(_s(dead_flat[i]), dead_flat[i + 1]) for i in range(0, len(dead_flat), 2)]
        return ClaimResult(ClaimCode(int(code)), int(wait), claimed, dead)

    async def ack(
        self, keys: AccountKeys, limits: LimitArgs, job_id: str, used: tuple[int, int] | None, outcome: Outcome,
        status: int = 0, model: str = "", pipe: Pipeline | None = None,
    ) -> bool:
        used_in, used_out = used if used is not None else (-1, -1)
        result = await self._call(
            self._ack,
            [keys.inflight, keys.jobs, keys.meta, keys.rl, keys.stats, keys.ready, keys.dlq, keys.bready],
            [job_id, used_in, used_out, *limits.rates(), outcome, status, model],
            pipe,
        )
        return bool(result)

    async def release(
        self, keys: AccountKeys, limits: LimitArgs, job_id: str, block_ms: int, counter: str
    ) -> bool:
        result = await self._call(
            self._release,
            [keys.ready, keys.inflight, keys.meta, keys.rl, keys.stats, keys.bready],
            [job_id, block_ms, *limits.rates(), counter],
        )
        return bool(result)

    async def block(self, keys: AccountKeys, block_ms: int) -> int:
        return int(await self._call(self._block, [keys.rl], [block_ms]))

    async def heartbeat(
        self, keys: AccountKeys, lease_ms: int, worker_id: str, job_ids: list[str]
    ) -> list[str]:
        lost = await self._call(self._heartbeat, [keys.inflight, keys.workers], [lease_ms, worker_id, *job_ids])
        return [_s(x) for x in lost]

    async def learn(self, keys: AccountKeys, caps: dict[str, int]) -> int:
        """caps: dimension ('r', 't', 'i', 'o') -> the provider's real limit per minute (0 = clear)."""
        args: list[Any] = []
        for dim, value in caps.items():
            args += [dim, value]
        return int(await self._call(self._learn, [keys.rl], args))

    async def cancel(self, keys: AccountKeys, job_id: str) -> bool:
        result = await self._call(self._cancel, [keys.ready, keys.jobs, keys.meta, keys.stats, keys.bready], [job_id])
        return bool(result)

    def ack_in_pipeline(self, pipe: Pipeline, keys: AccountKeys, limits: LimitArgs, job_id: str,
                        used: tuple[int, int] | None, outcome: Outcome, status: int, model: str) -> None:
        """Queues the ack as a bare EVALSHA: a Script object in a pipeline costs a SCRIPT EXISTS
        round trip on every execute. The caller must check for NoScriptError (see is_noscript)."""
        used_in, used_out = used if used is not None else (-1, -1)
        keys_list = [keys.inflight, keys.jobs, keys.meta, keys.rl, keys.stats, keys.ready, keys.dlq, keys.bready]
        args = [job_id, used_in, used_out, *limits.rates(), outcome, status, model]
        # a raw EVALSHA: redis-py refuses `pipe.evalsha` on a Cluster pipeline, not the command
        pipe.execute_command("EVALSHA", self._ack.sha, len(keys_list), *keys_list, *(str(a) for a in args))

    async def load(self) -> None:
        """Loads every script now (a worker does this at start, so pipelined EVALSHAs find them)."""
        for script in (self._enqueue, self._claim, self._ack, self._release, self._block, self._heartbeat,
                       self._cancel, self._learn):
            await script.registered_client.script_load(script.script)

    @staticmethod
    async def _call(script: AsyncScript, keys: list[str], args: list[Any], pipe: Pipeline | None = None) -> Any:
        # With a pipeline the call is only queued (redis-py loads the script first if needed).
        if pipe is not None and is_cluster(pipe):
            return queue_script(pipe, script, keys, args)
        if pipe is not None:
            return await script(keys=keys, args=args, client=pipe)
        return await run_script(script, keys, args)

    @staticmethod
    async def execute(pipe: Pipeline) -> list[Any]:
        """`pipe.execute()` for pipelines that may hold scripts: see `execute_pipeline`."""
        return await execute_pipeline(pipe)


# Scripts queued on Cluster pipelines, to re-run one by one where a node answered NOSCRIPT
# (the pipeline itself is held too, so its id cannot be reused until it has run).
_QUEUED: dict[int, tuple[Pipeline, list[tuple[int, AsyncScript, list[str], list[Any]]]]] = {}


def queue_script(pipe: Pipeline, script: AsyncScript, keys: list[str], args: list[Any]) -> None:
    """Queues a script on a Cluster pipeline as a bare EVALSHA. redis-py's own script support
    does not cover Cluster pipelines, and a replica promoted by a failover starts with an empty
    script cache (Redis 7 does not replicate it): `execute_pipeline` runs such a call again as a
    Script call, which loads it on every primary and retries."""
    _QUEUED.setdefault(id(pipe), (pipe, []))[1].append((len(pipe), script, keys, args))
    pipe.execute_command("EVALSHA", script.sha, len(keys), *keys, *args)


async def execute_pipeline(pipe: Pipeline) -> list[Any]:
    """Executes `pipe`, raising its first error like `pipe.execute()`; a script a Cluster node did
    not know is loaded and run again on its own (NOSCRIPT means it did not run)."""
    _, queued = _QUEUED.pop(id(pipe), (pipe, []))
    replies: list[Any] = await pipe.execute(raise_on_error=False)
    for index, script, keys, args in queued:
        if isinstance(replies[index], NoScriptError):
            replies[index] = await run_script(script, keys, args)
    for reply in replies:
        if isinstance(reply, Exception):
            raise reply
    return replies


async def run_script(script: AsyncScript, keys: list[str], args: list[Any]) -> Any:
    """Runs a script (EVALSHA; on NOSCRIPT redis-py loads it on the primaries it knows and tries
    again). Right after a failover the client may not know yet that a replica took over, so the
    node serving the keys can still lack the script: then the source goes with the call (EVAL),
    which runs it on that node and caches it there."""
    try:
        return await script(keys=keys, args=args)
    except (NoScriptError, RedisClusterException):
        # RedisClusterException: redis-py 5.2 can be left with no primary in its node list for
        # SCRIPT LOAD after failovers it learned of one MOVED at a time
        client: Any = script.registered_client
        return await client.eval(script.script, len(keys), *keys, *args)


def is_noscript(result: object) -> bool:
    return isinstance(result, NoScriptError)


def _s(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
