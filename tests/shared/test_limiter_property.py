"""The Lua queue + GCRA limiter against a pure-Python reference model, under a controlled clock.

The scripts read Redis's own clock (TIME), so the test owns that clock:

* on fakeredis the scripts run unmodified; fakeredis answers TIME from `time.time()` in its
  server module, which the test swaps for its own clock (checked before every run);
* on the real Redis the one `redis.call('TIME')` of `limiter.lua` is replaced, in the test's
  copy of the source only, by a read of a test-owned hash holding the same two fields, so the
  real server's Lua engine runs the rest of every script byte for byte.

Hypothesis draws an account (rpm/tpm/input/output limits, concurrency, tolerances, lease, max
attempts, queue cap, the batch lane's share) and a sequence of operations: enqueues with random
token costs (interactive or batch lane), clock ticks (random, or exactly the wait the last claim
named, or 1 ms less), claims, acks with random real usage, releases (upstream 429s) with blocks,
blocks, and limits learned from provider headers. After every operation the script's answer and the
whole of the account's Redis state must equal the reference model's, exactly. Independently of the
model, every run also checks what must hold whatever the arithmetic: the GCRA bound on what was
admitted, claims in arrival order within each lane, a batch job taking a claim from waiting
interactive work no more often than the batch share allows, no job lost or handed out twice, and no
refund leaving a TAT in the past.

`pytest --hypothesis-show-statistics` shows what the drawn programs exercised.
"""

from __future__ import annotations

import asyncio
import math
import types
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from unittest import mock

import fakeredis
import hypothesis.strategies as st
import pytest
import redis.asyncio as aioredis
from fakeredis.commands_mixins import server_mixin
from hypothesis import HealthCheck, event, given, settings
from hypothesis.control import currently_in_test_context

from shared.config import QueueSettings
from shared.redis import scripts as scripts_module
from shared.redis.keys import AccountKeys, Keys
from shared.redis.scripts import ClaimResult, LimitArgs, Scripts

DIMS = ("r", "t", "i", "o")
EPOCH_MS = 1_700_000_000_000  # a realistic Redis clock: 13-digit milliseconds
ROUNDING_MS = 0.0  # the scripts store times as "%.17g": full double precision

_original_source = scripts_module._source
TIME_CALL = "redis.call('TIME')"


def lua_tostring(value: float) -> str:
    """How the scripts store TATs and blocks: string.format('%.17g', value)."""
    return f"{value:.17g}"


# --- the controlled clock ------------------------------------------------------------------


class Clock:
    def __init__(self, start_ms: int) -> None:
        self.ms = start_ms

    def wall(self) -> float:
        # Mid-millisecond, so rounding to microseconds never lands on the previous millisecond.
        return (self.ms * 1000 + 500) / 1_000_000


class Harness:
    """The real scripts on one backend, with Redis's clock under the test's control."""

    def __init__(self, client: aioredis.Redis, keys: AccountKeys, clock: Clock,
                 sync: Callable[[], Awaitable[None]]) -> None:
        self.client = client
        self.scripts = Scripts(client)
        self.keys = keys
        self.clock = clock
        self.sync = sync

    async def dump(self) -> State:
        k = self.keys
        pipe = self.client.pipeline(transaction=False)
        for zset in (k.ready, k.bready, k.inflight, k.dlq):
            pipe.zrange(zset, 0, -1, withscores=True)
        for h in (k.jobs, k.meta, k.rl, k.stats):
            pipe.hgetall(h)
        pipe.llen(k.bell)
        ready, bready, inflight, dlq, jobs, meta, rl, stats, bell = await pipe.execute()
        return State(
            ready=[(_s(m), float(s)) for m, s in ready],
            bready=[(_s(m), float(s)) for m, s in bready],
            inflight=[(_s(m), float(s)) for m, s in inflight],
            dlq=[(_s(m), float(s)) for m, s in dlq],
            jobs={_s(f): bytes(v) for f, v in jobs.items()},
            meta={_s(f): _s(v) for f, v in meta.items()},
            rl={_s(f): _s(v) for f, v in rl.items()},
            stats={_s(f): int(v) for f, v in stats.items()},
            bell=int(bell),
        )


def _s(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


@contextmanager
def fake_clock(clock: Clock) -> Iterator[None]:
    """fakeredis's TIME reads `time.time()` through its server module: point that at the clock."""
    with mock.patch.object(server_mixin, "time", types.SimpleNamespace(time=clock.wall)):
        yield


@contextmanager
def shimmed_time_source(clock_key: str) -> Iterator[None]:
    def source(name: str) -> str:
        text = _original_source(name)
        assert text.count(TIME_CALL) == 1, "limiter.lua no longer reads the clock in one place"
        return text.replace(TIME_CALL, f"redis.call('HMGET', '{clock_key}', 's', 'us')")

    with mock.patch.object(scripts_module, "_source", source):
        yield


async def run_on(backend: str, redis_url: str, clock: Clock, body: Callable[[Harness], Awaitable[None]]) -> None:
    keys = Keys(f"tp{uuid.uuid4().hex[:10]}").account("acct")
    if backend == "fake":
        client: aioredis.Redis = fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer())

        async def sync() -> None:
            sec, usec = await client.time()
            assert sec * 1000 + usec // 1000 == clock.ms, "fakeredis's TIME is not the test clock"

        with fake_clock(clock):
            try:
                harness = Harness(client, keys, clock, sync)
                await harness.sync()
                await body(harness)
            finally:
                await client.aclose()
        return
    clock_key = f"{keys.rl}:test-clock"
    client = aioredis.Redis.from_url(redis_url)

    async def write_clock() -> None:
        await client.hset(clock_key, mapping={"s": clock.ms // 1000, "us": clock.ms % 1000 * 1000 + 500})  # type: ignore[misc]

    try:
        with shimmed_time_source(clock_key):
            harness = Harness(client, keys, clock, write_clock)
        await harness.sync()
        await body(harness)
    finally:
        stale = [key async for key in client.scan_iter(match=keys.rl.rsplit(":", 1)[0] + ":*")]
        if stale:
            await client.delete(*stale)
        await client.aclose()


# --- the reference model -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Setup:
    limits: LimitArgs
    lease_ms: int
    max_attempts: int
    max_depth: int
    start_ms: int
    batch_share: int = 100  # thousandths of the claims the batch lane gets while both lanes wait

    def rate(self, dim: str) -> int:
        """The configured limit per minute (0 = unlimited)."""
        return dict(zip(DIMS, self.limits.rates(), strict=True))[dim]

    def tolerance(self, dim: str) -> int:
        return self.limits.request_tolerance_ms if dim == "r" else self.limits.token_tolerance_ms

    def queue(self) -> QueueSettings:
        return QueueSettings(lease_seconds=self.lease_ms / 1000, max_attempts=self.max_attempts,
                             batch_min_share=self.batch_share / 1000)


@dataclass(slots=True)
class State:
    """Everything an account holds in Redis, in a comparable form."""

    ready: list[tuple[str, float]]
    bready: list[tuple[str, float]]
    inflight: list[tuple[str, float]]
    dlq: list[tuple[str, float]]
    jobs: dict[str, bytes]
    meta: dict[str, str]
    rl: dict[str, str]
    stats: dict[str, int]
    bell: int


def costs_of(reserved: str | None) -> dict[str, int]:
    """A job's cost per dimension from its stored reservation "input:output" (none = 0:0)."""
    cost_in, cost_out = (int(x) for x in (reserved or "0:0").split(":"))
    return {"r": 1, "t": cost_in + cost_out, "i": cost_in, "o": cost_out}


class Reference:
    """The queue and its GCRA limiter as specified, in plain Python.

    Per dimension with a limit L per minute the emission interval is I = 60000 / L ms. A job may
    start when every limited dimension's TAT is no more than its tolerance ahead of now; starting
    it moves each TAT to max(TAT, now) + cost x I. A refund moves it back by amount x I, never to
    before now. TATs are kept as Redis keeps them: the number as Lua 5.1 writes it ("%.14g").
    """

    def __init__(self, setup: Setup) -> None:
        self.setup = setup
        self.ready: dict[str, float] = {}
        self.bready: dict[str, float] = {}
        self.inflight: dict[str, float] = {}
        self.dlq: dict[str, float] = {}
        self.jobs: dict[str, bytes] = {}
        self.meta: dict[str, str] = {}
        self.rl: dict[str, str] = {}
        self.stats: Counter[str] = Counter()
        self.bell = 0

    def _tat(self, dim: str) -> float:
        return float(self.rl.get(f"tat_{dim}", "0"))

    def effective(self, dim: str, configured: int) -> int:
        """A limit the provider stated (learned) overrides a configured one that is higher or unset."""
        cap = int(self.rl.get(f"cap_{dim}", "0"))
        return cap if cap > 0 and (configured == 0 or cap < configured) else configured

    def _charge(self, now: int, dims: dict[str, int], costs: dict[str, int], sign: int) -> None:
        for dim, per_minute in dims.items():
            if per_minute > 0 and costs.get(dim, 0) != 0:
                tat = max(self._tat(dim), now)
                tat = tat + sign * costs[dim] * (60000 / per_minute)
                self.rl[f"tat_{dim}"] = lua_tostring(max(tat, now))

    def _wait(self, now: int, headroom: int) -> int:
        wait = 0.0
        for dim, per_minute in self.rates().items():
            if per_minute > 0:
                wait = max(wait, self._tat(dim) - now - self.setup.tolerance(dim) - headroom)
        return math.ceil(wait)

    def rates(self) -> dict[str, int]:
        return {dim: self.effective(dim, self.setup.rate(dim)) for dim in DIMS}

    def lane_of(self, job_id: str) -> dict[str, float]:
        return self.bready if f"{job_id}:l" in self.meta else self.ready

    def enqueue(self, now: int, job_id: str, payload: bytes, cost: tuple[int, int], batch: bool) -> int:
        lane = self.bready if batch else self.ready
        if len(lane) >= self.setup.max_depth:
            return -1
        # jobs enqueued within one millisecond keep their arrival order through a fraction
        if self.meta.get("#ms") == str(now):
            seq = int(self.meta["#seq"]) + 1
            self.meta["#seq"] = str(seq)
            seq = min(seq, 999)
        else:
            self.meta["#ms"], self.meta["#seq"], seq = str(now), "0", 0
        rank = now + seq / 1000
        if not batch:  # start-time fair queuing, one tenant ("") of weight 1
            v = float(self.meta.get("#v", "0"))
            if v == 0:
                v = rank
                self.meta["#v"] = f"{v:.3f}"
            finish = float(self.meta.get("#f:", "0"))
            rank = max(v, finish)
            self.meta["#f:"] = f"{rank + 1:.3f}"
            if finish < v:  # nothing of the tenant waits: it may use the fair headroom
                self.meta[f"{job_id}:f"] = "1"
        self.jobs[job_id] = payload
        self.meta[job_id] = f"{cost[0]}:{cost[1]}"
        self.meta[f"{job_id}:s"] = f"{rank:.3f}"
        if batch:
            self.meta[f"{job_id}:l"] = "1"
        lane[job_id] = rank
        self.bell = min(self.bell + 1, 256)
        return len(lane)

    def claim(self, now: int, max_jobs: int) -> ClaimResult:
        dead: list[tuple[str, bytes]] = []
        expired = sorted((deadline, job_id) for job_id, deadline in self.inflight.items() if deadline <= now)
        for _, job_id in expired[:32]:
            del self.inflight[job_id]
            attempts = int(self.meta.get(f"{job_id}:a", "0")) + 1
            self.meta[f"{job_id}:a"] = str(attempts)
            if attempts >= self.setup.max_attempts:
                self.dlq[job_id] = now
                self.stats["dead"] += 1
                dead.append((job_id, self.jobs.get(job_id, b"")))
            else:
                self.lane_of(job_id)[job_id] = float(self.meta.get(f"{job_id}:s", lua_tostring(now)))
                self.stats["reclaimed"] += 1
        blocked = float(self.rl.get("blocked", "0"))
        if blocked > now:
            return ClaimResult(3, math.ceil(blocked - now), [], dead)
        claimed: list[tuple[str, bytes, int]] = []
        concurrency = self.setup.limits.concurrency
        for _ in range(max_jobs):
            if concurrency > 0 and len(self.inflight) >= concurrency:
                return ClaimResult(2, 0, claimed, dead)
            if not self.bready:
                self.meta.pop("#bc", None)  # an empty batch lane banks no credit
            if not self.ready and not self.bready:
                self.bell = 0  # an empty queue drops stale doorbell rings
                return ClaimResult(0, 0, claimed, dead)
            credit = int(self.meta.get("#bc", "0"))
            lane, earned = self.ready, credit
            if not self.ready:
                lane = self.bready
            elif self.bready:
                earned = credit + self.setup.batch_share
                if earned >= 1000:
                    lane, earned = self.bready, earned - 1000
            job_id = min(lane, key=lambda j: (lane[j], j))
            fresh = lane is self.ready and f"{job_id}:f" in self.meta
            wait = self._wait(now, self.setup.limits.fair_headroom_ms if fresh else 0)
            if wait > 0:
                return ClaimResult(1, wait, claimed, dead)
            self._charge(now, self.rates(), costs_of(self.meta.get(job_id)), 1)
            if earned != credit:
                if earned:
                    self.meta["#bc"] = str(earned)
                else:
                    self.meta.pop("#bc", None)
            self.meta.pop(f"{job_id}:f", None)  # back on a lane later, it is a backlogged job
            if lane is self.ready and lane[job_id] > float(self.meta.get("#v", "0")):
                self.meta["#v"] = f"{lane[job_id]:.3f}"
            del lane[job_id]
            self.inflight[job_id] = now + self.setup.lease_ms
            self.stats["claimed"] += 1
            claimed.append((job_id, self.jobs.get(job_id, b""), int(self.meta.get(f"{job_id}:a", "0"))))
        return ClaimResult(0, 0, claimed, dead)

    def ack(self, now: int, job_id: str, used: tuple[int, int] | None, outcome: str, status: int,
            model: str) -> bool:
        was_ours = self.inflight.pop(job_id, None) is not None
        if not was_ours and (job_id in self.ready or job_id in self.bready or job_id in self.dlq):
            return False  # re-queued or dead-lettered after a lost lease: not ours to finish
        reserved = self.meta.get(job_id)
        if reserved is not None and used is not None:
            est = costs_of(reserved)
            real = {"t": used[0] + used[1], "i": used[0], "o": used[1]}
            for dim, spent in real.items():
                delta = est[dim] - spent
                if delta != 0:  # unused reservation comes back; overuse is charged
                    self._charge(now, {dim: self.rates()[dim]}, {dim: abs(delta)}, -1 if delta > 0 else 1)
        self.jobs.pop(job_id, None)
        for name in (job_id, f"{job_id}:s", f"{job_id}:a", f"{job_id}:l", f"{job_id}:f"):
            self.meta.pop(name, None)
        self.stats[outcome] += 1
        if status > 0:
            self.stats[f"http_{status}"] += 1
        if used is not None:  # per-model usage counters
            self.stats[f"tokens_in:{model}"] += used[0]
            self.stats[f"tokens_out:{model}"] += used[1]
        return was_ours

    def release(self, now: int, job_id: str, block_ms: int, counter: str) -> bool:
        if self.inflight.pop(job_id, None) is None:
            return False
        self.lane_of(job_id)[job_id] = float(self.meta.get(f"{job_id}:s", lua_tostring(now)))
        self._charge(now, self.rates(), costs_of(self.meta.get(job_id)), -1)
        if block_ms > 0 and now + block_ms > float(self.rl.get("blocked", "0")):
            self.rl["blocked"] = lua_tostring(now + block_ms)
        self.stats[counter] += 1
        return True

    def learn(self, caps: dict[str, int]) -> int:
        changed = 0
        for dim, value in caps.items():
            field = f"cap_{dim}"
            if value > 0:
                if float(self.rl.get(field, "0")) != value:
                    self.rl[field] = str(value)
                    changed += 1
            elif self.rl.pop(field, None) is not None:
                changed += 1
        return changed

    def block(self, now: int, block_ms: int) -> int:
        blocked = float(self.rl.get("blocked", "0"))
        if now + block_ms > blocked:
            self.rl["blocked"] = lua_tostring(now + block_ms)
            return now + block_ms
        return int(blocked)

    def state(self) -> State:
        def ordered(zset: dict[str, float]) -> list[tuple[str, float]]:
            return sorted(((m, float(s)) for m, s in zset.items()), key=lambda item: (item[1], item[0]))

        return State(ordered(self.ready), ordered(self.bready), ordered(self.inflight), ordered(self.dlq),
                     dict(self.jobs), dict(self.meta), dict(self.rl), {k: v for k, v in self.stats.items() if v},
                     self.bell)


# --- operations ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Tick:
    ms: int


@dataclass(frozen=True, slots=True)
class WaitAsTold:
    """Advance the clock by the wait the last claim named (or 1 ms less): the boundary cases."""

    early: bool


@dataclass(frozen=True, slots=True)
class Enqueue:
    cost_in: int
    cost_out: int
    batch: bool


@dataclass(frozen=True, slots=True)
class Claim:
    max_jobs: int


@dataclass(frozen=True, slots=True)
class Ack:
    pick: int
    used: tuple[int, int] | None
    outcome: str
    status: int
    model: str


@dataclass(frozen=True, slots=True)
class Release:
    pick: int
    block_ms: int
    counter: str


@dataclass(frozen=True, slots=True)
class Block:
    ms: int


@dataclass(frozen=True, slots=True)
class Learn:
    caps: dict[str, int]  # what the provider's headers state; 0 clears


Op = Tick | WaitAsTold | Enqueue | Claim | Ack | Release | Block | Learn


def _rate(high: int) -> st.SearchStrategy[int]:
    return st.one_of(st.just(0), st.integers(1, high))


setups = st.builds(
    Setup,
    limits=st.builds(
        LimitArgs,
        rpm=_rate(600),
        tpm=_rate(300_000),
        input_tpm=_rate(200_000),
        output_tpm=_rate(100_000),
        concurrency=st.sampled_from([0, 1, 2, 3, 6]),
        request_tolerance_ms=st.one_of(st.just(0), st.integers(1, 10_000)),
        token_tolerance_ms=st.one_of(st.just(0), st.integers(1, 10_000)),
        fair_headroom_ms=st.one_of(st.just(0), st.integers(1, 10_000)),
    ),
    lease_ms=st.sampled_from([0, 0, 500, 5_000, 60_000]),
    max_attempts=st.integers(1, 3),
    max_depth=st.integers(1, 40),
    start_ms=st.integers(EPOCH_MS, EPOCH_MS + 10**9),
    batch_share=st.sampled_from([0, 100, 250, 999, 1000]),
)
tokens = st.integers(0, 5000)
ticks = st.builds(Tick, st.one_of(st.integers(0, 50), st.integers(0, 5_000), st.integers(0, 120_000)))
waits = st.builds(WaitAsTold, st.booleans())
enqueues = st.builds(Enqueue, tokens, tokens, st.booleans())
claims = st.builds(Claim, st.integers(0, 5))
acks = st.builds(Ack, st.integers(0, 7), st.one_of(st.none(), st.tuples(tokens, tokens)),
                 st.sampled_from(["completed", "failed", "expired"]), st.sampled_from([0, 200, 500]),
                 st.sampled_from(["", "mock-small"]))
releases = st.builds(Release, st.integers(0, 7), st.one_of(st.just(0), st.integers(1, 5_000)),
                     st.sampled_from(["upstream_429", "requeued"]))
blocks = st.builds(Block, st.integers(1, 5_000))
learns = st.builds(Learn, st.dictionaries(st.sampled_from(DIMS), st.one_of(st.just(0), st.integers(1, 300_000)),
                                          min_size=1))
# Weighted towards the traffic a queue sees: enqueues, claims and acks; 429s and blocks are rarer.
weighted: list[st.SearchStrategy[Op]] = (
    [ticks] * 2 + [waits] * 2 + [enqueues] * 4 + [claims] * 4 + [acks] * 3 + [releases] * 2 + [blocks, learns])
ops: st.SearchStrategy[list[Op]] = st.lists(st.sampled_from(weighted).flatmap(lambda kind: kind),
                                            min_size=20, max_size=80)


# --- observed invariants, independent of the model -------------------------------------------


class Observed:
    """What the test itself knows: what it enqueued, was handed, acknowledged, released, learned."""

    def __init__(self, setup: Setup, t0: int) -> None:
        self.setup = setup
        self.t0 = t0
        self.accepted: dict[str, dict[str, int]] = {}  # id -> cost per dimension
        self.arrival: dict[str, tuple[int, int]] = {}  # id -> (enqueue ms, enqueue order): the FIFO order
        self.batch: set[str] = set()  # ids enqueued on the batch lane
        self.contested = 0  # claims made while both lanes held work
        self.overtaken = 0  # of those, claims the batch lane took
        self.done: set[str] = set()
        self.net = dict.fromkeys(DIMS, 0)  # cost charged minus cost refunded, per dimension
        self.max_cost = dict.fromkeys(DIMS, 0)
        self.writes = 0  # TAT writes so far: each may round by ROUNDING_MS
        self.caps: dict[str, int] = {}
        # The bound below assumes one emission interval throughout: it is checked per dimension
        # until a learned cap changes that dimension's limit.
        self.steady = {dim: True for dim in DIMS}

    def limit(self, dim: str) -> int:
        configured, cap = self.setup.rate(dim), self.caps.get(dim, 0)
        return cap if cap > 0 and (configured == 0 or cap < configured) else configured

    def enqueued(self, now: int, job_id: str, cost: tuple[int, int], batch: bool) -> None:
        costs = costs_of(f"{cost[0]}:{cost[1]}")
        self.arrival[job_id] = (now, len(self.accepted))
        if batch:
            self.batch.add(job_id)
        self.accepted[job_id] = costs
        for dim in DIMS:
            self.max_cost[dim] = max(self.max_cost[dim], costs[dim])

    def learned(self, caps: dict[str, int]) -> None:
        before = {dim: self.limit(dim) for dim in DIMS}
        self.caps.update(caps)
        for dim in DIMS:
            if self.limit(dim) != before[dim]:
                self.steady[dim] = False

    def admitted(self, now: int, job_id: str) -> None:
        self.writes += 1
        for dim in DIMS:
            self.net[dim] += self.accepted[job_id][dim]
            per_minute = self.limit(dim)
            if per_minute > 0 and self.steady[dim]:
                # GCRA: at an admission the TAT is at most now + tolerance, and everything charged
                # so far sits between the first operation and that TAT; plus this job's own cost.
                # (a fresh job may start up to the fair headroom further ahead)
                slack = self.setup.tolerance(dim) + self.setup.limits.fair_headroom_ms
                bound = per_minute * (now - self.t0 + slack + ROUNDING_MS * self.writes)
                assert self.net[dim] <= bound / 60000 + self.max_cost[dim] + 1e-6, (
                    f"{dim}: {self.net[dim]} admitted by t+{now - self.t0} ms at {per_minute}/min")

    def acked(self, job_id: str, used: tuple[int, int] | None) -> None:
        self.writes += 1
        self.done.add(job_id)
        if used is not None:
            cost = self.accepted[job_id]
            self.net["t"] += used[0] + used[1] - cost["t"]
            self.net["i"] += used[0] - cost["i"]
            self.net["o"] += used[1] - cost["o"]

    def released(self, job_id: str) -> None:
        self.writes += 1
        for dim in DIMS:
            self.net[dim] -= self.accepted[job_id][dim]

    def check_state(self, now: int, before: State, after: State) -> None:
        places = [{m for m, _ in zset} for zset in (after.ready, after.bready, after.inflight, after.dlq)]
        places.append(self.done)
        assert sum(len(p) for p in places) == len(self.accepted), "a job is in two places at once"
        assert set().union(*places) == set(self.accepted), "a job was lost"
        for field, value in after.rl.items():
            if field.startswith("tat_") and before.rl.get(field) != value:
                assert float(value) >= now, f"{field} was written into the past: {value} < {now}"

    def check_claim(self, now: int, before: State, got: ClaimResult, after: State) -> None:
        dead = {job_id for job_id, _ in got.dead}  # reaped past max_attempts: dead-lettered, not claimable
        reaped = {m for m, d in before.inflight if d <= now} - dead
        if reaped:
            note("claim reaped an expired lease")
        claimable = {m for m, _ in before.ready} | {m for m, _ in before.bready} | reaped
        ids = [job_id for job_id, _, _ in got.claimed]
        assert len(set(ids)) == len(ids) and set(ids) <= claimable, "a job was handed out twice"
        for in_lane, left in ((False, after.ready), (True, after.bready)):
            order = [self.arrival[j] for j in ids if (j in self.batch) == in_lane]
            assert order == sorted(order), "one claim handed out jobs out of arrival order"
            if order and left:
                first_left = min(self.arrival[m] for m, _ in left)
                assert order[-1] < first_left, "a job was claimed ahead of one that arrived before it"
        # Interactive work goes first: a batch job takes a claim from waiting interactive work only
        # on the credit the batch share earns, so never more often than share/1000 of such claims.
        interactive_left = {m for m, _ in before.ready} | {m for m in reaped if m not in self.batch}
        batch_left = {m for m, _ in before.bready} | {m for m in reaped if m in self.batch}
        for job_id in ids:
            if interactive_left and batch_left:
                self.contested += 1
                if job_id in self.batch:
                    self.overtaken += 1
                    note("a batch job took its share ahead of waiting interactive work")
            (batch_left if job_id in self.batch else interactive_left).discard(job_id)
        assert self.overtaken * 1000 <= self.contested * self.setup.batch_share, (
            f"batch took {self.overtaken} of {self.contested} contested claims at share {self.setup.batch_share}")
        for job_id, payload, _ in got.claimed:
            assert payload == f"payload-{job_id}".encode()


# --- the property ----------------------------------------------------------------------------


def note(what: str) -> None:
    """Counts what the drawn programs exercised (pytest --hypothesis-show-statistics)."""
    if currently_in_test_context():
        event(what)


async def check_against_model(h: Harness, setup: Setup, program: list[Op]) -> None:
    model = Reference(setup)
    seen = Observed(setup, setup.start_ms)
    queue = setup.queue()
    limits = setup.limits
    told = 0  # the wait the last claim named
    for step, op in enumerate(program):
        if isinstance(op, Tick | WaitAsTold):
            h.clock.ms += op.ms if isinstance(op, Tick) else max(0, told - op.early)
            continue
        if isinstance(op, Ack | Release) and not model.inflight:
            continue
        await h.sync()
        now = h.clock.ms
        before = await h.dump()
        where = f"step {step}: {op} at t+{now - setup.start_ms} ms"
        got: ClaimResult | None = None
        if isinstance(op, Enqueue):
            job_id = f"j{step:05d}"
            payload = f"payload-{job_id}".encode()
            cost = (op.cost_in, op.cost_out)
            depth = await h.scripts.enqueue(h.keys, job_id, payload, cost, op.batch, setup.max_depth)
            assert depth == model.enqueue(now, job_id, payload, cost, op.batch), where
            if depth > 0:
                seen.enqueued(now, job_id, cost, op.batch)
        elif isinstance(op, Claim):
            got = await h.scripts.claim(h.keys, limits, queue, op.max_jobs)
            assert got == model.claim(now, op.max_jobs), where
            told = got.wait_ms
            note(f"claim code {got.code}")
            if got.claimed:
                note("claim admitted a job")
            if got.dead:
                note("claim dead-lettered a job")
            for job_id, _, _ in got.claimed:
                seen.admitted(now, job_id)
        elif isinstance(op, Ack):
            job_id = sorted(model.inflight)[op.pick % len(model.inflight)]
            ours = await h.scripts.ack(h.keys, limits, job_id, op.used, op.outcome, op.status, op.model)
            assert ours and model.ack(now, job_id, op.used, op.outcome, op.status, op.model), where
            seen.acked(job_id, op.used)
        elif isinstance(op, Release):
            job_id = sorted(model.inflight)[op.pick % len(model.inflight)]
            if 0 < op.block_ms < float(before.rl.get("blocked", "0")) - now:
                note("a release blocked for less than an ongoing block")
            requeued = await h.scripts.release(h.keys, limits, job_id, op.block_ms, op.counter)
            assert requeued and model.release(now, job_id, op.block_ms, op.counter), where
            seen.released(job_id)
        elif isinstance(op, Block):
            assert await h.scripts.block(h.keys, op.ms) == model.block(now, op.ms), where
        else:
            assert await h.scripts.learn(h.keys, op.caps) == model.learn(op.caps), where
            seen.learned(op.caps)
        after = await h.dump()
        assert after == model.state(), f"{where}\nredis: {after}\nmodel: {model.state()}"
        seen.check_state(now, before, after)
        if got is not None:
            seen.check_claim(now, before, got, after)


@pytest.mark.parametrize("backend", ["fake", "real"])
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(setup=setups, program=ops)
def test_lua_limiter_matches_reference_model(backend: str, redis_url: str, setup: Setup,
                                             program: list[Op]) -> None:
    clock = Clock(setup.start_ms)

    async def body(h: Harness) -> None:
        await check_against_model(h, setup, program)

    asyncio.run(run_on(backend, redis_url, clock, body))


# --- examples worth keeping whatever hypothesis draws ----------------------------------------


def run(backend: str, redis_url: str, clock: Clock, body: Callable[[Harness], Awaitable[Any]]) -> None:
    asyncio.run(run_on(backend, redis_url, clock, body))


@pytest.mark.parametrize("backend", ["fake", "real"])
def test_paced_rpm_admits_exactly_the_gcra_schedule(backend: str, redis_url: str) -> None:
    """60 rpm, tolerance 0: one job per second on the dot, never two in the same second."""
    clock = Clock(EPOCH_MS)

    async def body(h: Harness) -> None:
        limits = LimitArgs(60, 0, 0, 0, 0, 0, 0)
        for n in range(5):
            await h.scripts.enqueue(h.keys, f"j{n}", b"x", (1, 1), False, 100)
        admitted: list[int] = []
        while len(admitted) < 5:
            await h.sync()
            got = await h.scripts.claim(h.keys, limits, QueueSettings(), 5)
            admitted += [clock.ms - EPOCH_MS] * len(got.claimed)
            clock.ms += max(got.wait_ms, 1)
        assert admitted == [0, 1000, 2000, 3000, 4000]

    run(backend, redis_url, clock, body)


@pytest.mark.parametrize("backend", ["fake", "real"])
def test_refund_after_idle_time_never_banks_capacity(backend: str, redis_url: str) -> None:
    """A job acked long after its claim, having used nothing, leaves the TAT at now, not behind it."""
    clock = Clock(EPOCH_MS)

    async def body(h: Harness) -> None:
        limits = LimitArgs(0, 60_000, 0, 0, 0, 0, 0)  # 1 token per ms
        for n in range(3):
            await h.scripts.enqueue(h.keys, f"j{n}", b"x", (500, 500), False, 100)
        await h.sync()
        [(first, _, _)] = (await h.scripts.claim(h.keys, limits, QueueSettings(), 3)).claimed
        clock.ms += 10_000  # the reservation is long paid for
        await h.sync()
        await h.scripts.ack(h.keys, limits, first, (0, 0), "completed")
        assert float(await h.client.hget(h.keys.rl, "tat_t") or 0) == clock.ms  # type: ignore[misc]
        got = await h.scripts.claim(h.keys, limits, QueueSettings(), 3)
        assert len(got.claimed) == 1 and got.code == 1 and got.wait_ms == 1000

    run(backend, redis_url, clock, body)


@pytest.mark.parametrize("backend", ["fake", "real"])
def test_a_shorter_retry_after_never_shortens_a_block(backend: str, redis_url: str) -> None:
    clock = Clock(EPOCH_MS)

    async def body(h: Harness) -> None:
        limits = LimitArgs(0, 0, 0, 0, 0, 0, 0)
        for n in range(2):
            await h.scripts.enqueue(h.keys, f"j{n}", b"x", (1, 1), False, 100)
        await h.scripts.claim(h.keys, limits, QueueSettings(), 2)
        assert await h.scripts.block(h.keys, 10_000) == EPOCH_MS + 10_000
        assert await h.scripts.block(h.keys, 5_000) == EPOCH_MS + 10_000
        clock.ms += 1000
        await h.sync()
        assert await h.scripts.release(h.keys, limits, "j0", 2_000, "upstream_429")  # a shorter 429 hold
        got = await h.scripts.claim(h.keys, limits, QueueSettings(), 2)
        assert got.code == 3 and got.wait_ms == 9_000
        assert await h.scripts.release(h.keys, limits, "j1", 20_000, "upstream_429")  # a longer one wins
        got = await h.scripts.claim(h.keys, limits, QueueSettings(), 2)
        assert got.code == 3 and got.wait_ms == 20_000

    run(backend, redis_url, clock, body)


# --- regressions: bugs these tests found, since fixed ----------------------------------------


@pytest.mark.parametrize("backend", ["fake", "real"])
def test_arrival_order_holds_across_the_sequence_wrap(backend: str, redis_url: str) -> None:
    clock = Clock(EPOCH_MS)

    async def body(h: Harness) -> None:
        arrived = [f"j{n:04d}" for n in range(1000)]
        for n, job_id in enumerate(arrived):
            if n == 998:
                clock.ms += 5  # the last two arrive together, in one millisecond
                await h.sync()
            await h.scripts.enqueue(h.keys, job_id, b"x", (1, 1), False, 10_000)
        claimed: list[str] = []
        while len(claimed) < len(arrived):
            claimed += [job_id for job_id, _, _ in (await h.scripts.claim(
                h.keys, LimitArgs(0, 0, 0, 0, 0, 0, 0), QueueSettings(), 200)).claimed]
        assert claimed[-2:] == arrived[-2:]

    run(backend, redis_url, clock, body)


@pytest.mark.parametrize("backend", ["fake", "real"])
def test_high_tpm_still_charges_small_jobs(backend: str, redis_url: str) -> None:
    clock = Clock(EPOCH_MS)

    async def body(h: Harness) -> None:
        limits = LimitArgs(0, 150_000_000, 0, 0, 0, 0, 0)  # a top-tier tpm: 2,500 tokens per ms
        for n in range(10):
            await h.scripts.enqueue(h.keys, f"j{n}", b"x", (60, 40), False, 100)
        await h.sync()
        got = await h.scripts.claim(h.keys, limits, QueueSettings(), 10)
        # tolerance 0: the first job puts the bucket 0.04 ms ahead of now; the second must wait
        assert len(got.claimed) == 1 and got.code == 1 and got.wait_ms == 1
        assert float(await h.client.hget(h.keys.rl, "tat_t") or 0) > clock.ms  # type: ignore[misc]

    run(backend, redis_url, clock, body)


@pytest.mark.parametrize("backend", ["fake", "real"])
def test_late_ack_after_lost_lease_leaves_no_payloadless_job(backend: str, redis_url: str) -> None:
    clock = Clock(EPOCH_MS)

    async def body(h: Harness) -> None:
        limits = LimitArgs(30, 0, 0, 0, 0, 0, 0)  # one request per 2 s
        queue = QueueSettings(lease_seconds=1.0)
        await h.scripts.enqueue(h.keys, "job", b"payload", (10, 10), False, 100)
        await h.sync()
        assert (await h.scripts.claim(h.keys, limits, queue, 1)).claimed  # worker A, then A stalls
        clock.ms += 1500
        await h.sync()
        reaped = await h.scripts.claim(h.keys, limits, queue, 1)  # worker B: reaps, limiter says wait
        assert reaped.code == 1 and not reaped.claimed
        assert not await h.scripts.ack(h.keys, limits, "job", (10, 10), "completed")  # A comes back
        queued = [_s(m) for m in await h.client.zrange(h.keys.ready, 0, -1)]
        assert all([await h.client.hexists(h.keys.jobs, m) for m in queued]), "a queued id has no payload"  # type: ignore[misc]
        clock.ms += 1000
        await h.sync()
        for _, payload, _ in (await h.scripts.claim(h.keys, limits, queue, 1)).claimed:
            assert payload == b"payload"

    run(backend, redis_url, clock, body)
