"""What `sluice status` and `/metrics` show of the batches that are running: per batch its lines
queued (fed, not yet claimed), running, done and failed; per account its batch lines in flight."""

from __future__ import annotations

from collections import Counter
from typing import Any

import redis.asyncio as aioredis

from shared.batches.records import Records
from shared.config import Config


async def collect_batches(config: Config, client: aioredis.Redis) -> dict[str, Any]:
    records = Records(client, config.key_prefix)
    ids = [x.decode() for x in await client.zrange(records.active, 0, -1)]
    batches = []
    per_account: Counter[str] = Counter()
    for batch_id in ids:
        view = await records.batch(batch_id)
        if view is None:
            continue
        pending = await records.pending(batch_id)
        per_account.update(pending.values())
        batches.append({"id": batch_id, "dialect": view.dialect, "client": view.client, "status": view.status,
                        "total": view.total, "unfed": max(0, view.total - view.fed), "in_flight": len(pending),
                        "succeeded": view.n_s, "failed": view.n_e + view.n_c + view.n_x})
    return {"batches": batches, "batch_lines_in_flight": dict(per_account)}


def render_batches(report: dict[str, Any]) -> list[str]:
    lines = []
    for b in report.get("batches", []):
        lines.append(f"batch {b['id']} ({b['dialect']}, {b['client']}): {b['status']} total={b['total']} "
                     f"unfed={b['unfed']} in_flight={b['in_flight']} done={b['succeeded']} failed={b['failed']}")
    return lines


def metric_lines(report: dict[str, Any]) -> list[str]:
    lines = ["# TYPE sluice_batch_lines gauge"]
    for b in report.get("batches", []):
        for state in ("total", "unfed", "in_flight", "succeeded", "failed"):
            lines.append(f'sluice_batch_lines{{batch="{b["id"]}",state="{state}"}} {b[state]}')
    lines.append("# TYPE sluice_batch_lines_in_flight gauge")
    for account, n in sorted(report.get("batch_lines_in_flight", {}).items()):
        lines.append(f'sluice_batch_lines_in_flight{{account="{account}"}} {n}')
    return lines
