"""claim.lua under contention from several OS processes at once, on the real Redis.

Each process runs the loop a worker runs: claim up to a few jobs, hold each for a moment (the
upstream call), acknowledge it; on a limiter answer it waits exactly the wait the script names,
on "concurrency full" it waits for any process's next acknowledgement (a doorbell list), and it
stops when a claim finds the queue empty. The processes start together behind a barrier and
share one account: the same keys, the same limits.

What the processes record is checked afterwards. In-flight intervals are recorded from "the claim
returned" to "the ack is about to be sent", a sub-interval of the time Redis holds the job in
flight, so their overlap can only under-count the real one; and each process also samples ZCARD
of the in-flight set right after each of its claims.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import random
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from multiprocessing.synchronize import Barrier

import pytest

from shared.config import QueueSettings
from shared.redis.client import Role, connect, connect_sync
from shared.redis.keys import AccountKeys, Keys
from shared.redis.scripts import LimitArgs, Scripts

PROCESSES = 4
ACCOUNT = "shared-acct"
QUEUE = QueueSettings(lease_seconds=60)  # nothing expires during a test: every claim is a first claim
SPAWN = multiprocessing.get_context("spawn")


@dataclass(frozen=True, slots=True)
class Plan:
    """What one claimer process is told to do."""

    index: int
    redis_url: str
    prefix: str
    limits: LimitArgs
    slots: int  # jobs this process runs at once
    batch: int  # max jobs per claim call
    hold_s: float  # simulated upstream latency per job


@dataclass(slots=True)
class Report:
    """What one claimer process saw."""

    index: int
    claims: list[tuple[str, int, float, float]] = field(default_factory=list)  # id, attempt, claimed, acked
    admitted: list[tuple[float, int]] = field(default_factory=list)  # (wall time after claim, tokens)
    released_at: float = 0.0  # wall time when the start barrier let this process go
    inflight_samples: list[int] = field(default_factory=list)
    limiter_waits: int = 0
    concurrency_full: int = 0


def doorbell(keys: AccountKeys) -> str:
    return f"{keys.ready}:test-acked"


async def run_claimer(plan: Plan, start: Barrier) -> Report:
    client = connect(plan.redis_url, Role.TOOL)
    scripts = Scripts(client)
    keys = Keys(plan.prefix).account(ACCOUNT)
    report = Report(plan.index)
    running: set[asyncio.Task[None]] = set()

    async def run_job(job_id: str, attempt: int, claimed_at: float) -> None:
        await asyncio.sleep(plan.hold_s)  # the upstream call
        acked_at = time.monotonic()
        assert await scripts.ack(keys, plan.limits, job_id, None, "completed")
        report.claims.append((job_id, attempt, claimed_at, acked_at))
        await client.lpush(doorbell(keys), "1")

    await scripts.claim(keys, plan.limits, QUEUE, 0)  # loads the script before the race starts
    await asyncio.to_thread(start.wait)
    report.released_at = time.time()
    try:
        while True:
            if len(running) >= plan.slots:
                await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                continue
            result = await scripts.claim(keys, plan.limits, QUEUE, min(plan.batch, plan.slots - len(running)))
            claimed_at, wall = time.monotonic(), time.time()
            if result.claimed:
                report.inflight_samples.append(int(await client.zcard(keys.inflight)))
            for job_id, payload, attempt in result.claimed:
                assert payload == f"payload-{job_id}".encode()
                reserved = sum(int(x) for x in job_id.split("-")[1:3])
                report.admitted.append((wall, reserved))
                task = asyncio.create_task(run_job(job_id, attempt, claimed_at))
                running.add(task)
                task.add_done_callback(running.discard)
            if result.code == 0 and not result.claimed:
                break  # the queue is empty, and nothing in this test puts a job back
            if result.code == 1:
                report.limiter_waits += 1
                await asyncio.sleep(result.wait_ms / 1000)  # exactly what the limiter asked for
            elif result.code == 2:
                report.concurrency_full += 1
                await client.blpop([doorbell(keys)], timeout=0.1)  # any process's next ack
        if running:
            await asyncio.gather(*running)
    finally:
        await client.aclose()
    return report


def claimer_process(plan: Plan, start: Barrier, out: multiprocessing.Queue[Report | str]) -> None:
    try:
        out.put(asyncio.run(run_claimer(plan, start)))
    except BaseException as exc:  # the parent reports it; a silent child would only time out
        out.put(f"claimer {plan.index} failed: {exc!r}")
        raise


@pytest.fixture
def keys(redis_url: str) -> Iterator[AccountKeys]:
    prefix = f"tc{uuid.uuid4().hex[:10]}"
    yield Keys(prefix).account(ACCOUNT)
    client = connect_sync(redis_url)
    stale = list(client.scan_iter(match=f"{prefix}:*"))
    if stale:
        client.delete(*stale)
    client.close()  # type: ignore[no-untyped-call]


def enqueue_jobs(redis_url: str, keys: AccountKeys, costs: list[tuple[int, int]]) -> list[str]:
    """Jobs named after their reserved cost ("n-<input>-<output>"), so a claimer knows it."""

    async def go() -> list[str]:
        client = connect(redis_url, Role.TOOL)
        scripts = Scripts(client)
        ids = []
        for n, cost in enumerate(costs):
            job_id = f"{n:04d}-{cost[0]}-{cost[1]}"
            assert await scripts.enqueue(keys, job_id, f"payload-{job_id}".encode(), cost, False, 10_000) == n + 1
            ids.append(job_id)
        await client.aclose()
        return ids

    return asyncio.run(go())


def race(redis_url: str, keys: AccountKeys, limits: LimitArgs, slots: int, batch: int,
         hold_s: float) -> list[Report]:
    prefix = keys.ready.split(":", 1)[0]
    start = SPAWN.Barrier(PROCESSES)
    out: multiprocessing.Queue[Report | str] = SPAWN.Queue()
    procs = [SPAWN.Process(target=claimer_process,
                           args=(Plan(i, redis_url, prefix, limits, slots, batch, hold_s), start, out))
             for i in range(PROCESSES)]
    for proc in procs:
        proc.start()
    try:
        results = [out.get(timeout=120) for _ in procs]
    finally:
        for proc in procs:
            proc.join(30)
            if proc.is_alive():
                proc.kill()
    failures = [r for r in results if isinstance(r, str)]
    assert not failures, failures
    return sorted((r for r in results if isinstance(r, Report)), key=lambda r: r.index)


def max_overlap(intervals: list[tuple[float, float]]) -> int:
    edges = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals],
                   key=lambda e: (e[0], e[1]))  # at a tie an interval ends before the next starts
    level = peak = 0
    for _, step in edges:
        level += step
        peak = max(peak, level)
    return peak


def test_every_job_claimed_exactly_once_under_the_concurrency_cap(redis_url: str, keys: AccountKeys) -> None:
    cap = 5
    ids = enqueue_jobs(redis_url, keys, [(10, 10)] * 200)
    limits = LimitArgs(rpm=600_000, tpm=0, input_tpm=0, output_tpm=0, concurrency=cap,
                       request_tolerance_ms=0, token_tolerance_ms=0)
    reports = race(redis_url, keys, limits, slots=3, batch=2, hold_s=0.005)

    claims = [c for r in reports for c in r.claims]
    claimed_ids = [job_id for job_id, _, _, _ in claims]
    assert len(claimed_ids) == len(ids), "a job was claimed twice or never"
    assert sorted(claimed_ids) == ids
    assert all(attempt == 0 for _, attempt, _, _ in claims)
    assert sum(1 for r in reports if r.claims) >= 2, "no contention: one process took everything"

    samples = [s for r in reports for s in r.inflight_samples]
    assert max(samples) <= cap
    overlap = max_overlap([(claimed, acked) for _, _, claimed, acked in claims])
    assert 2 <= overlap <= cap
    assert sum(r.concurrency_full for r in reports) > 0, "the cap never pushed back"

    client = connect_sync(redis_url)
    try:
        assert client.zcard(keys.ready) == 0 and client.zcard(keys.inflight) == 0
        assert client.hlen(keys.jobs) == 0
        stats = {k.decode(): int(v) for k, v in client.hgetall(keys.stats).items()}  # type: ignore[union-attr]
        assert stats.get("claimed") == 200 and stats.get("completed") == 200
        assert "reclaimed" not in stats and "dead" not in stats
    finally:
        client.close()  # type: ignore[no-untyped-call]


def test_tokens_admitted_by_all_processes_stay_within_the_gcra_bound(redis_url: str,
                                                                      keys: AccountKeys) -> None:
    tpm = 1_200_000  # 20 tokens per ms
    rng = random.Random(7)
    costs = [(rng.randint(100, 1000), rng.randint(100, 1000)) for _ in range(60)]
    total = sum(a + b for a, b in costs)
    biggest = max(a + b for a, b in costs)
    enqueue_jobs(redis_url, keys, costs)
    limits = LimitArgs(rpm=0, tpm=tpm, input_tpm=0, output_tpm=0, concurrency=0,
                       request_tolerance_ms=0, token_tolerance_ms=0)
    reports = race(redis_url, keys, limits, slots=4, batch=4, hold_s=0)
    # every process read this clock after the barrier and before its first claim: no admission
    # can have happened before the earliest of those readings
    started = min(r.released_at for r in reports)

    admitted = sorted(a for r in reports for a in r.admitted)
    assert sum(tokens for _, tokens in admitted) == total
    assert sum(r.limiter_waits for r in reports) > 0, "the limiter never held anyone back"
    assert sum(1 for r in reports if r.admitted) >= 2, "no contention: one process took everything"
    # An admission recorded at wall time w happened in Redis at or before w, after `started`: by
    # any w, everything admitted fits in tpm x (w - started) plus the one job the GCRA lets into debt.
    slack_ms = 2  # the recorded time and Redis's TIME are read from one clock, at ms granularity
    so_far = 0
    for wall, tokens in admitted:
        so_far += tokens
        bound = tpm * ((wall - started) * 1000 + slack_ms) / 60_000 + biggest
        assert so_far <= bound, f"{so_far} tokens admitted {wall - started:.3f} s in, bound {bound:.0f}"
    # and the budget was used, not idled away (generously: the machine may be busy)
    ideal_s = total / (tpm / 60_000) / 1000
    assert admitted[-1][0] - started < 2 * ideal_s + 5
