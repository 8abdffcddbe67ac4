"""Scenario 2. Replicas: several worker processes on one account share its one limit exactly."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from typing import Any

from bench.limits.cluster import AccountSpec, SystemSpec, jobs_per_worker, running
from bench.limits.load import at, chat, drain, keep_busy, make_client, prompt
from bench.limits.measure import (
    account_counters,
    completed_between,
    failures,
    fmt_counters,
    max_in_window,
    paced_rate,
)
from bench.limits.result import Ctx, Result
from shared.mock.settings import MockSettings


async def replicas(ctx: Ctx) -> Result:
    rpm, count = 120, 4
    warm, window = (3.0, 15.0) if ctx.quick else (5.0, 60.0)
    outstanding = 40
    res = Result("replicas", f"{count} worker processes on one {rpm} rpm account, steady backlog")
    res.config = [
        f"1 account, `limits: {{rpm: {rpm}}}` (concurrency 16 per worker), {count} worker processes",
        "1 mock process, no limits, no latency",
        f"client keeps {outstanding} requests open (queue never empty), max_tokens 16, max-wait 600",
        f"measured over a {window:.0f} s window after {warm:.0f} s of warm-up, at the mock "
        "(request counter) and at the client (answer times)",
    ]
    spec = SystemSpec(mocks={"mock": MockSettings()}, accounts=[AccountSpec("acct", "mock", {"rpm": rpm})],
                      replicas=count)
    async with running(ctx, "replicas", spec) as cluster, make_client() as http:
        t0 = time.monotonic()

        def stats() -> Awaitable[dict[str, Any]]:
            return cluster.mock_stats(http, "mock")

        s0 = asyncio.create_task(at(t0, warm, stats))
        s1 = asyncio.create_task(at(t0, warm + window, stats))
        mid = asyncio.create_task(at(t0, warm + window / 2, cluster.status))
        tasks = await keep_busy(
            lambda i: chat(http, cluster.base_url, t0, i, "small", prompt(i, 200), 16),
            outstanding, t0 + warm + window + 0.5, 100_000)
        outcomes = await drain(tasks, outstanding * 60 / rpm + 60, t0)
        before, after, status_mid = await s0, await s1, await mid
        status = await cluster.status()
        per_worker = jobs_per_worker(cluster, "acct")
    upstream = int(after["requests"]) - int(before["requests"])
    upstream_rate = upstream / window * 60
    done = completed_between(outcomes, warm, warm + window)
    paced = paced_rate(done, lambda _: 1.0)
    burst10 = max_in_window([o.done for o in done], 10.0)
    allowed = window * rpm / 60
    acct_mid = status_mid["accounts"][0]
    res.figure("requests sent / ok", f"{len(outcomes)} / {sum(o.ok for o in outcomes)}")
    res.figure("failed", failures(outcomes))
    res.figure("mock requests in window", f"{upstream} (limit allows {allowed:.0f} + 1)")
    res.figure("achieved rate at the mock", f"{upstream_rate:.1f} /min ({upstream_rate / rpm * 100:.1f} %)")
    res.figure("answers in window (client)", len(done))
    res.figure("paced rate (client answer spacing)",
               f"{paced:.1f} /min ({paced / rpm * 100:.1f} %)" if paced else "n/a")
    res.figure("most answers in any 10 s", f"{burst10} (limit pace: {10 * rpm / 60:.0f})")
    res.figure("mock 429s / max in flight", f"{after['responses_429']} / {after['max_in_flight']}")
    res.figure("queue depth mid-window", acct_mid["queue"]["interactive"] + acct_mid["queue"]["batch"])
    res.figure("live workers (status)", acct_mid["live_workers"])
    res.figure("jobs per worker process (whole run)", " / ".join(str(c) for c in per_worker))
    res.figure("Sluice counters", fmt_counters(account_counters(status)["acct"]))
    res.check("at or under the limit (mock count <= window x rpm + 1)", upstream <= allowed + 1,
              f"{upstream} in {window:.0f} s")
    res.check(">= 95% of the limit", upstream_rate >= 0.95 * rpm, f"{upstream_rate / rpm * 100:.1f} %")
    res.check("no failures", all(o.ok for o in outcomes), f"{sum(not o.ok for o in outcomes)} failed")
    res.summary = (f"{upstream_rate:.1f}/min at the mock over {window:.0f} s = "
                   f"{upstream_rate / rpm * 100:.1f} % of {rpm} rpm with {count} replicas "
                   f"(paced {paced or 0:.1f}/min)")
    res.notes.append("The replicas share one GCRA state in Redis and each claim is one Lua step, so they "
                     "cannot overshoot together; the 10 s maximum is the GCRA bound (pace + 1).")
    if per_worker and min(per_worker) == 0:
        res.notes.append("A worker process claimed nothing: the others took every slot (fine for the rate).")
    if upstream_rate < 0.95 * rpm:
        res.notes.append("Under the limit with a non-empty queue means claims came late: look at the claim "
                         "loop's limiter-wait sleep (worker/loop.py `_claim_loop`) and at machine load.")
    return res

