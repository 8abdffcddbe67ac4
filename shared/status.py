"""`sluice status`: per account, what the limiter and the queue hold right now.

One pipelined read per account; the limiter's fields are read and interpreted by
shared/redis/limiter.py, with the scripts' own rules (a provider's stated cap below the
configured rate is the rate).
"""

from __future__ import annotations

import time
from typing import Any

import orjson
import redis.asyncio as aioredis

from shared.config import Account, Config
from shared.redis import limiter
from shared.redis.client import Role, connect
from shared.redis.keys import Keys
from shared.redis.limiter import Dim, LimiterState

WORKER_STALE_MS = 60_000  # a worker silent this long is not live (heartbeat.lua forgets it then too)


async def collect(config: Config, shared_client: aioredis.Redis | None = None) -> dict[str, Any]:
    client = shared_client or connect(config.redis_url, Role.TOOL)
    keys = Keys(config.key_prefix)
    try:
        (sec, usec) = await client.time()
        now_ms = sec * 1000 + usec / 1000
        accounts = []
        for account in config.accounts:
            k = keys.account(account.name)
            pipe = client.pipeline(transaction=False)
            pipe.zcard(k.ready)
            pipe.zcount(k.ready, "-inf", now_ms + 1)  # interactive: ranked at enqueue time
            pipe.zcard(k.inflight)
            limiter.queue_read(pipe, k.rl)
            pipe.zcount(k.workers, now_ms - WORKER_STALE_MS, "+inf")
            pipe.zcard(k.dlq)
            pipe.hgetall(k.stats)
            depth, interactive, inflight, rl, workers, dead, stats = await pipe.execute()
            accounts.append(_account_report(account, LimiterState.decode(rl), now_ms, depth, interactive,
                                            inflight, workers, dead, stats))
        return {"at": time.time(), "accounts": accounts}
    finally:
        if shared_client is None:
            await client.aclose()


def _account_report(account: Account, state: LimiterState, now_ms: float, depth: int, interactive: int,
                    inflight: int, workers: int, dead: int, stats: dict[bytes, bytes]) -> dict[str, Any]:
    lim = account.limits
    rpm = state.per_minute(Dim.REQUESTS, lim.rpm)
    tpm = state.per_minute(Dim.TOKENS, lim.tpm)
    return {
        "account": account.name,
        "provider": account.provider,
        "limits": {"rpm": lim.rpm, "tpm": lim.tpm, "concurrency": lim.concurrency},
        "left_now": {
            "requests": _rounded(state.left(Dim.REQUESTS, rpm, now_ms)),
            "tokens": _rounded(state.left(Dim.TOKENS, tpm, now_ms)),
            "concurrency": lim.concurrency - inflight,
        },
        "queue": {"interactive": interactive, "batch": depth - interactive},
        "in_flight": inflight,
        "blocked_for_s": round(state.blocked_ms(now_ms) / 1000, 2),
        "provider_caps": {str(dim): cap for dim, cap in state.caps.items()},
        "drain_s": round(depth * 60 / rpm, 1) if rpm else None,
        "live_workers": workers,
        "dead_letters": dead,
        "counters": {key.decode(): int(value) for key, value in stats.items()},
    }


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


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
    return "\n".join(lines) if lines else "no accounts configured"
