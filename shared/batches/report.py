"""What `sluice status` and `/metrics` show of the batches that are running: per batch its lines
not yet fed, queued (fed, not yet claimed), running (claimed by a worker), done and failed; per
account its batch lines queued and running."""

from __future__ import annotations

from collections import Counter
from typing import Any

import redis.asyncio as aioredis

from shared.batches.records import Records, line_jobs
from shared.config import Config
from shared.redis.keys import Keys


async def collect_batches(config: Config, client: aioredis.Redis) -> dict[str, Any]:
    records = Records(client, config.key_prefix)
    keys = Keys(config.key_prefix)
    ids = [x.decode() for x in await client.zrange(records.active, 0, -1)]
    batches = []
    queued: Counter[str] = Counter()
    running: Counter[str] = Counter()
    for batch_id in ids:
        view = await records.batch(batch_id)
        if view is None:
            continue
        pending = await records.pending(batch_id)
        # per upstream call (a line split into parts is one call per part)
        calls = [(line, *call) for line, accounts in pending.items() for call in line_jobs(batch_id, line, accounts)]
        pipe = client.pipeline(transaction=False)
        for _, job, account in calls:  # in flight = claimed by a worker; else still queued
            pipe.zscore(keys.account(account).inflight, job)
        claimed = await pipe.execute() if calls else []
        mine = Counter(account for (_, _, account), score in zip(calls, claimed, strict=True) if score is not None)
        running.update(mine)
        queued.update(account for _, _, account in calls)
        queued.subtract(mine)
        running_lines = len({line for (line, _, _), score in zip(calls, claimed, strict=True) if score is not None})
        batches.append({"id": batch_id, "dialect": view.dialect, "client": view.client, "status": view.status,
                        "total": view.total, "unfed": max(0, view.total - view.fed),
                        "queued": len(pending) - running_lines, "running": running_lines,
                        "succeeded": view.n_s, "failed": view.n_e + view.n_c + view.n_x})
    return {"batches": batches, "batch_lines": {a: {"queued": queued[a], "running": running[a]}
                                                for a in sorted(set(queued) | set(running))}}


def render_batches(report: dict[str, Any]) -> list[str]:
    lines = []
    for b in report.get("batches", []):
        lines.append(f"batch {b['id']} ({b['dialect']}, {b['client']}): {b['status']} total={b['total']} "
                     f"unfed={b['unfed']} queued={b['queued']} running={b['running']} done={b['succeeded']} "
                     f"failed={b['failed']}")
    return lines


def metric_lines(report: dict[str, Any]) -> list[str]:
    lines = ["# TYPE sluice_batch_lines gauge"]
    for b in report.get("batches", []):
        for state in ("total", "unfed", "queued", "running", "succeeded", "failed"):
            lines.append(f'sluice_batch_lines{{batch="{b["id"]}",state="{state}"}} {b[state]}')
    lines.append("# TYPE sluice_batch_account_lines gauge")
    for account, n in report.get("batch_lines", {}).items():
        for state in ("queued", "running"):
            lines.append(f'sluice_batch_account_lines{{account="{account}",state="{state}"}} {n[state]}')
    return lines
