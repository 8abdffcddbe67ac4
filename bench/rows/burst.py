"""Row 5: the burst. 300 requests at once for a model served by two provider
keys, each allowed 60 requests a minute, sent to each target in turn.

- direct: the client spreads the burst over both keys itself (half to each mock) and takes
  whatever the provider says;
- litellm: the proxy with both keys as deployments of one model, each with `rpm: 60`, and its
  own rate-limit-aware routing (`usage-based-routing-v2`, counters in the bench's Redis so both
  of its workers share them), in a proxy of its own so the other rows' proxy keeps its defaults;
- portkey: the gateway with both keys as targets of one `loadbalance` config (sent per request in
  `x-portkey-config`, as the gateway keeps no config of its own) and `retry` on 429 with its
  largest attempt count (5), on the run's gateway;
- sluice: both keys as accounts with `limits: {rpm: 60}`, one worker process each.

The two mocks play the keys (`sluice mock-upstream --rpm 60`: a bucket of 10 requests refilled at
one a second) and are reset between targets. Every request may wait up to 10 minutes, so what a
target does with a burst (queue it, spread it, refuse it) is what the row shows.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

import httpx

from bench.harness import Bench
from bench.log import log
from shared.mock.settings import MockSettings
from shared.system import MockOptions, System, SystemOptions

REQUESTS = 300
RPM = 60
MODEL = "burst-model"
UPSTREAM_MODEL = "mock-small"
PATIENCE_S = 600.0  # how long each request may wait: the whole burst fits in 150 s at the limit
SLUICE_KEY = "sk-bench-burst"


@dataclass
class Shot:
    status: int  # 0: no HTTP answer
    sent: float
    done: float
    error: str = ""


async def _fire(urls: list[str], key: str, model: str, n: int, extra_headers: dict[str, str]) -> list[Shot]:
    """Sends n chat requests at once, request i to urls[i % len(urls)]; waits for every answer."""
    limits = httpx.Limits(max_connections=n + 10, max_keepalive_connections=n + 10)
    headers = {"authorization": f"Bearer {key}", **extra_headers}
    async with httpx.AsyncClient(timeout=httpx.Timeout(PATIENCE_S, connect=30), limits=limits,
                                 headers=headers) as http:
        t0 = time.monotonic()

        async def one(i: int) -> Shot:
            body = {"model": model, "max_tokens": 16, "messages": [{"role": "user", "content": f"burst {i}"}]}
            sent = time.monotonic() - t0
            try:
                reply = await http.post(f"{urls[i % len(urls)]}/chat/completions", json=body)
            except httpx.HTTPError as exc:
                return Shot(0, sent, time.monotonic() - t0, type(exc).__name__)
            ok = reply.status_code == 200 and bool(reply.json().get("choices"))
            return Shot(reply.status_code if ok or reply.status_code != 200 else -1, sent, time.monotonic() - t0)

        return list(await asyncio.gather(*(one(i) for i in range(n))))


def _mock_totals(mock_urls: list[str]) -> dict[str, int]:
    totals: Counter[str] = Counter()
    for url in mock_urls:
        stats = httpx.get(f"{url}/_stats", timeout=5).json()
        totals["requests"] += int(stats.get("requests", 0))
        totals["429"] += int(stats.get("responses_429", 0))
    totals["200"] = totals["requests"] - totals["429"]
    return dict(totals)


def _summary(shots: list[Shot], mock: dict[str, int]) -> dict[str, Any]:
    ok = [s for s in shots if s.status == 200]
    statuses = Counter("ok" if s.status == 200 else (f"HTTP {s.status}" if s.status > 0 else
                                                      "200 without a completion" if s.status < 0 else s.error)
                       for s in shots)
    statuses.pop("ok", None)
    return {"sent": len(shots), "ok": len(ok), "errors": dict(statuses),
            "wall_s": max((s.done for s in ok), default=None),
            "latency_p50_s": statistics.median([s.done - s.sent for s in ok]) if ok else None,
            "mock_200": mock.get("200", 0), "mock_429": mock.get("429", 0)}


def row_burst(bench: Bench) -> dict[str, Any]:
    n = bench.plan.burst_requests
    assert bench.redis is not None
    # The two mocks play the keys: a bucket of 10 requests each, refilled at one a second.
    mocks = [MockOptions(f"burst-mock-{name}", settings=MockSettings(rpm=RPM)) for name in "ab"]
    mock_urls = [m.url for m in mocks]
    # Sluice's side: both keys as accounts, one worker each, on the run's Redis under its own prefix.
    # Its workers idle (waiting on their doorbells) while the other targets run.
    system = System(SystemOptions(
        config={
            "key_prefix": "burst",
            "client_keys": [{"name": "bench", "key": SLUICE_KEY}],
            "accounts": [{"name": f"key-{name}", "provider": "mock", "base_url": f"{url}/v1",
                          "limits": {"rpm": RPM}} for name, url in zip("ab", mock_urls, strict=True)],
            "models": [{"name": MODEL, "route": [{"account": f"key-{name}", "model": UPSTREAM_MODEL}
                                                 for name in "ab"]}],
        },
        redis_url=bench.redis.url, embedded_redis="never", mocks=mocks, log_dir=bench.results / "burst"))
    litellm_server = None
    try:
        try:
            system.start()
        except Exception as exc:
            raise SystemExit(f"bench: the burst system did not start: {exc}") from None
        out: dict[str, Any] = {"requests": n, "rpm": RPM, "keys": 2}

        def run(target: str, urls: list[str], key: str, model: str, headers: dict[str, str]) -> None:
            for url in mock_urls:
                httpx.post(f"{url}/_reset", timeout=5).raise_for_status()  # full buckets, zero counters
            log(f"burst: {n} requests at once to {target}")
            shots = asyncio.run(_fire(urls, key, model, n, headers))
            out[target] = _summary(shots, _mock_totals(mock_urls))

        run("direct", [f"{url}/v1" for url in mock_urls], "x", UPSTREAM_MODEL, {})

        if bench.want_litellm and not bench.litellm_missing:
            deployments = [{"model_name": MODEL, "litellm_params": {
                "model": f"openai/{UPSTREAM_MODEL}", "api_base": f"{url}/v1", "api_key": "x", "rpm": RPM}}
                for url in mock_urls]
            started = bench.launch_litellm("litellm-burst", {
                "model_list": deployments,
                "router_settings": {"routing_strategy": "usage-based-routing-v2",
                                    "redis_host": "127.0.0.1", "redis_port": bench.redis.port},
            })
            if isinstance(started, str):
                out["litellm_missing"] = started
            else:
                litellm_server, url, key = started
                run("litellm", [f"{url}/v1"], key, MODEL, {})

        portkey = next((t for t in bench.targets if t.name == "portkey"), None)
        if portkey is not None:
            config = {"strategy": {"mode": "loadbalance"},
                      "retry": {"attempts": 5, "on_status_codes": [429]},
                      "targets": [{"provider": "openai", "custom_host": f"{url}/v1", "api_key": "x", "weight": 1}
                                  for url in mock_urls]}
            run("portkey", [portkey.url], "x", UPSTREAM_MODEL, {"x-portkey-config": json.dumps(config)})
        elif bench.portkey_missing:
            out["portkey_missing"] = bench.portkey_missing

        run("sluice", [f"{system.base_url}/v1"], SLUICE_KEY, MODEL, {"x-sluice-max-wait": f"{PATIENCE_S:g}"})
        return out
    finally:
        if litellm_server is not None:
            litellm_server.stop()
        system.stop()

