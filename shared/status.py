"""`sluice status`: per account, what the limiter and the queue hold right now."""

from __future__ import annotations

import time
from typing import Any

import orjson
import redis.asyncio as aioredis

from shared.batches.report import collect_batches, render_batches
from shared.config import Config
from shared.redis.keys import Keys


async def collect(config: Config, shared_client: aioredis.Redis | None = None) -> dict[str, Any]:
    client = shared_client or aioredis.Redis.from_url(config.redis_url)
    keys = Keys(config.key_prefix)
    try:
        (sec, usec) = await client.time()
        now_ms = sec * 1000 + usec / 1000
        accounts = []
        for account in config.accounts:
            k = keys.account(account.name)
            pipe = client.pipeline(transaction=False)
            pipe.zcard(k.ready)
            pipe.zcard(k.bready)
            pipe.zcard(k.inflight)
            pipe.hgetall(k.rl)
            pipe.zcount(k.workers, now_ms - 60000, "+inf")
            pipe.zcard(k.dlq)
            pipe.hgetall(k.stats)
            interactive, batch, inflight, rl, workers, dead, stats = await pipe.execute()
            depth = interactive + batch
            rl = {key.decode(): float(value) for key, value in rl.items()}
            lim = account.limits
            blocked = rl.get("blocked", 0.0)
            accounts.append({
                "account": account.name,
                "provider": account.provider,
                "limits": {"rpm": lim.rpm, "tpm": lim.tpm, "concurrency": lim.concurrency},
                "left_now": {
                    "requests": _left(lim.rpm, rl.get("tat_r", 0.0), now_ms),
                    "tokens": _left(lim.tpm, rl.get("tat_t", 0.0), now_ms),
                    "concurrency": lim.concurrency - inflight,
                },
                "queue": {"interactive": interactive, "batch": batch},
                "in_flight": inflight,
                "blocked_for_s": round(max(0.0, blocked - now_ms) / 1000, 2),
                "provider_caps": {k[4:]: int(v) for k, v in rl.items() if k.startswith("cap_")},
                "drain_s": round(depth * 60 / lim.rpm, 1) if lim.rpm else None,
                "live_workers": workers,
                "dead_letters": dead,
                "counters": {key.decode(): int(value) for key, value in stats.items()},
            })
        return {"at": time.time(), "accounts": accounts, **await collect_batches(config, client)}
    finally:
        if shared_client is None:
            await client.aclose()


def _left(per_minute: int | None, tat: float, now_ms: float) -> float | None:
    """GCRA: how much of the per-minute budget could start right now (negative = in debt)."""
    if not per_minute:
        return None
    interval = 60000 / per_minute
    return round(max(0.0, now_ms - tat) / interval if tat < now_ms else -(tat - now_ms) / interval, 1)


def render(report: dict[str, Any], as_json: bool = False) -> str:
    if as_json:
        return orjson.dumps(report, option=orjson.OPT_INDENT_2).decode()
    lines = []
    for a in report["accounts"]:
        lim, left, q = a["limits"], a["left_now"], a["queue"]
        lines.append(
            f"{a['account']} ({a['provider']}): workers={a['live_workers']} in_flight={a['in_flight']}"
            f"/{lim['concurrency']} queue interactive={q['interactive']} batch={q['batch']}"
        )
        lines.append(
            f"  limits rpm={lim['rpm']} tpm={lim['tpm']}  left now: requests={left['requests']} "
            f"tokens={left['tokens']}  blocked_for={a['blocked_for_s']}s  drain≈{a['drain_s']}s  "
            f"dead_letters={a['dead_letters']}"
        )
    lines += render_batches(report)
    return "\n".join(lines) if lines else "no accounts configured"
