"""The fair-share row: `python -m bench.fairness` (about three minutes; figures in docs/benchmarks.md).

One rate-limited account (RPM requests a minute, zero-delay mock) and two client keys. The small
tenant sends SMALL_RPS requests a second for SECONDS; in the flood scenarios a big tenant sends
FLOOD_FACTOR times as many, more than the account allows, so a backlog builds. Three runs:

1. `alone`: the small tenant by itself, the baseline.
2. `fair`: the flood comes from the big tenant's own key: Sluice's fair queuing (enqueue.lua) gives
   each key its share of the account, so the small tenant's requests start ahead of the backlog.
3. `one queue`: the same flood sent with the small tenant's key, so both are one tenant and the
   queue is plain arrival order: what the small tenant would see without fair queuing.

The figure is the small tenant's queue wait (Sluice's `server-timing: queue;dur=…`, from enqueue
to the worker's claim), median and p90, and its ratio to `alone`. Every run waits until every
request is answered, so one run's backlog never spills into the next.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import time
from pathlib import Path
from typing import Any

import httpx

from shared.system import MockOptions, System, SystemOptions

SMALL_KEY = "sk-bench-small"
BIG_KEY = "sk-bench-big"
RPM = 3000  # 50 requests a second, one every 20 ms
SMALL_RPS = 1.5
FLOOD_FACTOR = 50  # the big tenant sends 75 requests a second: 1.5x what the account allows
SECONDS = 30
_QUEUE = re.compile(r"queue;dur=([0-9.]+)")


async def tenant(http: httpx.AsyncClient, url: str, key: str, rps: float, seconds: float,
                 waits: list[float] | None, errors: dict[str, int]) -> None:
    t0 = time.monotonic() + 0.2
    body = {"model": "shared", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 16}

    async def one(i: int) -> None:
        await asyncio.sleep(max(0.0, t0 + i / rps - time.monotonic()))  # the open-loop schedule
        try:
            reply = await http.post(url, json=body, headers={"authorization": f"Bearer {key}"})
        except httpx.HTTPError as exc:
            errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
            return
        if reply.status_code != 200:
            errors[f"HTTP {reply.status_code}"] = errors.get(f"HTTP {reply.status_code}", 0) + 1
            return
        found = _QUEUE.search(reply.headers.get("server-timing", ""))
        if waits is not None and found:
            waits.append(float(found.group(1)))

    await asyncio.gather(*(one(i) for i in range(int(rps * seconds))))


async def scenario(url: str, flood_key: str | None, seconds: float) -> dict[str, Any]:
    waits: list[float] = []
    errors: dict[str, int] = {}
    # idle connections are dropped before the API's 5 s keep-alive timeout could close one under a request
    limits = httpx.Limits(max_connections=4096, max_keepalive_connections=4096, keepalive_expiry=4)
    async with httpx.AsyncClient(timeout=300, limits=limits) as http:
        runs = [tenant(http, url, SMALL_KEY, SMALL_RPS, seconds, waits, errors)]
        if flood_key is not None:
            runs.append(tenant(http, url, flood_key, SMALL_RPS * FLOOD_FACTOR, seconds, None, errors))
        await asyncio.gather(*runs)
    waits.sort()
    return {"n": len(waits), "p50": statistics.median(waits), "p90": waits[int(len(waits) * 0.9)],
            "max": waits[-1], "errors": errors}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--logs", type=Path, default=None, help="where server logs go (default: a temp dir)")
    parser.add_argument("--seconds", type=float, default=SECONDS, help="how long each tenant sends")
    args = parser.parse_args()
    mock = MockOptions("mock")
    config = {
        "key_prefix": "bench-fair",
        "client_keys": [{"name": "small", "key": SMALL_KEY}, {"name": "big", "key": BIG_KEY}],
        "accounts": [{"name": "shared", "provider": "mock", "base_url": f"{mock.url}/v1",
                      "limits": {"rpm": RPM, "concurrency": 256}}],
        "models": [{"name": "shared", "route": [{"account": "shared", "model": "mock-model"}]}],
        "queue": {"result_ttl_seconds": 60},
    }
    options = SystemOptions(config=config, embedded_redis="always", mocks=[mock], log_dir=args.logs,
                            log_level="WARNING")
    with System(options) as system:
        url = f"{system.base_url}/v1/chat/completions"
        print(f"one account at {RPM} rpm; small tenant {SMALL_RPS:g} rps, flood {FLOOD_FACTOR}x that "
              f"({SMALL_RPS * FLOOD_FACTOR:g} rps) for {args.seconds:g} s")
        rows = {name: asyncio.run(scenario(url, flood, args.seconds))
                for name, flood in (("alone", None), ("fair", BIG_KEY), ("one queue", SMALL_KEY))}
    alone = rows["alone"]["p50"]
    for name, row in rows.items():
        print(f"  {name:10} small tenant's queue wait: p50 {row['p50']:.2f} ms  p90 {row['p90']:.2f} ms  "
              f"max {row['max']:.2f} ms  (n {row['n']}; p50 {row['p50'] / alone:.1f}x alone)  "
              f"errors {row['errors'] or 0}")


if __name__ == "__main__":
    main()
