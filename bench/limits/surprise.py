"""Scenario 4. Surprise: the config says more than the provider really allows; back off, fail nothing."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from typing import Any

from bench.limits.cluster import AccountSpec, SystemSpec, block_summary, running
from bench.limits.load import at, chat, drain, keep_busy, make_client, prompt
from bench.limits.measure import (
    account_counters,
    completed_between,
    failures,
    fmt_counters,
    on_off_cycles,
    paced_rate,
    per_bucket,
    window_range,
)
from bench.limits.result import Ctx, Result
from shared.mock.settings import MockSettings


async def surprise(ctx: Ctx) -> Result:
    config_rpm, real_rpm = 120, 60
    duration = 40.0 if ctx.quick else 90.0
    outstanding = 12
    settle = 15.0  # the first seconds spend the provider's full bucket
    res = Result("surprise", f"Config says {config_rpm} rpm, the provider really allows {real_rpm}")
    res.config = [
        f"1 account, `limits: {{rpm: {config_rpm}}}`, 1 worker process",
        f"1 mock process, `--rpm {real_rpm}` (bucket of {real_rpm // 6} requests, refilled 1/s), 429 with "
        "retry-after / retry-after-ms",
        f"client keeps {outstanding} requests open for {duration:.0f} s, then waits for all of them",
        "rate measured at the mock (200 answers) over the last 30 s (and 60 s) of the loaded period",
    ]
    mock = MockSettings(rpm=real_rpm, latency_ms=ctx.surprise_latency_ms)
    if ctx.surprise_latency_ms:
        res.config[1] += f", `--latency-ms {ctx.surprise_latency_ms:g}`"
    spec = SystemSpec(mocks={"mock": mock}, accounts=[AccountSpec("acct", "mock", {"rpm": config_rpm})])
    marks = [m for m in (duration - 60, duration - 30, duration) if m >= 0]
    async with running(ctx, "surprise", spec) as cluster, make_client() as http:
        t0 = time.monotonic()

        def stats() -> Awaitable[dict[str, Any]]:
            return cluster.mock_stats(http, "mock")

        snaps = [asyncio.create_task(at(t0, m, stats)) for m in marks]
        tasks = await keep_busy(
            lambda i: chat(http, cluster.base_url, t0, i, "small", prompt(i, 200), 16),
            outstanding, t0 + duration + 0.5, 100_000)
        outcomes = await drain(tasks, outstanding * 60 / real_rpm + 120, t0)
        snapshots = {m: await s for m, s in zip(marks, snaps, strict=True)}
        final = await cluster.mock_stats(http, "mock")
        status = await cluster.status()
        n_blocks, blocks = block_summary(cluster, "acct")
        limiter = await cluster.limiter_state("acct")

    def ok_at(m: float) -> int:
        return int(snapshots[m]["by_status"].get("200", 0))

    rate30 = (ok_at(duration) - ok_at(duration - 30)) / 30 * 60
    rate60 = (ok_at(duration) - ok_at(duration - 60)) / 60 * 60 if duration - 60 in snapshots else None
    client30 = len(completed_between(outcomes, duration - 30, duration)) * 2
    ok = [o for o in outcomes if o.ok]
    loaded = [o.done for o in completed_between(outcomes, 0, duration)]
    cycles = on_off_cycles(loaded, settle)
    steady = cycles.rate if cycles.rate is not None else paced_rate(
        completed_between(outcomes, settle, duration), lambda _: 1.0)
    low30, high30 = window_range(loaded, 30, min(settle, duration - 30), duration)
    counters = account_counters(status)["acct"]
    res.figure("requests sent / ok", f"{len(outcomes)} / {len(ok)}")
    res.figure("failed (client-visible)", failures(outcomes))
    res.figure("rate at the mock, last 30 s", f"{rate30:.1f} /min")
    if rate60 is not None:
        res.figure("rate at the mock, last 60 s", f"{rate60:.1f} /min")
    res.figure("rate at the client, last 30 s", f"{client30:.1f} /min")
    res.figure("mock 429s (whole run)", final["responses_429"])
    res.figure("upstream 429s seen by the worker (log)", blocks)
    res.figure("answers per 10 s", per_bucket(outcomes, 10, duration))
    if cycles.count:
        res.figure(f"on/off cycles after t={settle:.0f} s",
                   f"{cycles.count} whole cycles: {cycles.per_cycle:.0f} answers every {cycles.period:.1f} s, "
                   f"then {cycles.pause:.1f} s silent")
    how = "whole on/off cycles" if cycles.rate is not None else "answer spacing"
    res.figure(f"long-run rate after t={settle:.0f} s ({how})",
               f"{steady:.1f} /min" if steady is not None else "n/a")
    res.figure(f"any 30 s window after t={settle:.0f} s reads",
               f"{low30 * 2}-{high30 * 2} /min")
    res.figure("Sluice counters", fmt_counters(counters))
    learned = {k: v for k, v in limiter.items() if k.startswith("cap_")}
    res.figure("limits learned from headers (limiter hash cap_*)",
               ", ".join(f"{k} {v:g}/min" for k, v in sorted(learned.items())) or "none")
    res.check("no request fails", len(ok) == len(outcomes) and bool(outcomes),
              f"{len(outcomes) - len(ok)} failed")
    res.check(f"long-run rate near the real {real_rpm}/min (+-10 %)",
              steady is not None and 0.9 * real_rpm <= steady <= 1.1 * real_rpm,
              f"{steady or 0:.1f} /min")
    res.check(f"rate over the last 30 s settles near the real {real_rpm}/min (+-15 %)",
              0.85 * real_rpm <= rate30 <= 1.15 * real_rpm, f"{rate30:.1f} /min")
    res.summary = (f"{len(ok)}/{len(outcomes)} ok, {rate30:.1f}/min over the last 30 s, {steady or 0:.1f}/min "
                   f"long-run (real limit {real_rpm}), {final['responses_429']} mock 429s")
    if cycles.count:
        res.notes.append(
            f"The rate does not settle into an even pace: it alternates between sending at the configured "
            f"{config_rpm}/min and {cycles.pause:.1f} s of silence (period {cycles.period:.1f} s). When an "
            "answer says x-ratelimit-remaining-requests: 0 the worker holds the key for "
            "x-ratelimit-reset-requests, which is the time until the provider's bucket is full again "
            f"({real_rpm // 6} requests), then spends that bucket at {config_rpm}/min. The long-run rate is "
            f"right ({steady or 0:.1f}/min), but a 30 s window reads anywhere from {low30 * 2} to "
            f"{high30 * 2}/min depending on where it cuts the cycle, and queued requests wait up to "
            f"{cycles.pause:.0f} s longer than needed. Sluice never adopts the real limit, although every "
            f"answer carries it (x-ratelimit-limit-requests: {real_rpm}).")
    if learned.get("cap_r"):
        res.notes.append(f"The worker read x-ratelimit-limit-requests ({learned['cap_r']:g}) from the answers "
                         "and capped the account's shared limiter at it, so claims were paced at the real "
                         f"limit instead of the configured {config_rpm}/min.")
    if int(final["responses_429"]) == 0:
        res.notes.append("No 429 at all: the key slowed down on the provider's rate-limit headers before the "
                         "provider had to refuse, so the 429 path (block for retry-after, re-queue) was not "
                         "exercised here.")
    else:
        res.notes.append(f"{n_blocks} upstream 429s: each blocked the key for the retry-after time and "
                         "re-queued the job at its old place; no client saw them.")
    return res

