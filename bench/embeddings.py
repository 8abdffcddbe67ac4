"""The embeddings row: `python -m bench.embeddings` (about a minute; figures in docs/benchmarks.md).

Runs two measurements, each against the mock directly (the baseline)
and through Sluice, with the same load:

1. Constant rate (open loop): RATE requests a second for SECONDS, each an OpenAI `/v1/embeddings`
   call with INPUTS texts of about 50 tokens, DIMENSIONS-value vectors, base64 (what the openai SDK
   asks for by default). Latency is from each request's scheduled send time; *added* is Sluice
   minus direct.
2. TPM-bound burst: BURST requests sent at once to an account whose provider allows BURST_TPM
   tokens a minute (`mock-upstream --tpm`, a bucket of ten seconds' worth); Sluice's account has the
   same `tpm`. The burst holds about twice the provider's bucket: direct, the provider refuses what
   does not fit; through Sluice, every request should succeed with 0 upstream 429s.

Everything starts through `shared.system.System` (a private redis-server, two mocks, one worker
per account, one API process) and stops at the end. Imports only httpx and Sluice's own modules.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from pathlib import Path
from typing import Any

import httpx

from shared.mock.settings import MockSettings
from shared.system import MockOptions, System, SystemOptions

KEY = "sk-bench-embeddings"
RATE = 50
SECONDS = 20
INPUTS = 8
DIMENSIONS = 256
WARMUP = 5  # rounds of 8 concurrent requests before the measured run
TEXT = "Sluice queues every request and sends it when the provider key has room for it. " * 3  # ~50 tokens
BURST = 200
BURST_TPM = 240_000  # 4,000 tokens a second; the provider's bucket holds 40,000
BURST_INPUTS = 8  # 8 x ~50 tokens = ~400 tokens a request, 80,000 for the burst


def body(n: int, i: int) -> dict[str, Any]:
    return {"input": [f"{i}.{j} {TEXT}" for j in range(n)], "encoding_format": "base64", "dimensions": DIMENSIONS}


async def constant_rate(url: str, model: str, key: str, seconds: int) -> dict[str, Any]:
    total = RATE * seconds
    latencies: list[float] = []
    overheads: list[float] = []  # what Sluice says it added (x-sluice-overhead-ms)
    errors: dict[str, int] = {}
    limits = httpx.Limits(max_connections=256, max_keepalive_connections=256)
    async with httpx.AsyncClient(timeout=10, limits=limits, headers={"authorization": f"Bearer {key}"}) as http:
        for i in range(WARMUP):  # connections and first-call paths warmed, not measured
            await asyncio.gather(*(http.post(f"{url}/embeddings", json={"model": model, **body(INPUTS, -1 - i)})
                                   for _ in range(8)))
        t0 = time.monotonic() + 0.2

        async def one(i: int) -> None:
            scheduled = t0 + i / RATE
            await asyncio.sleep(max(0.0, scheduled - time.monotonic()))  # the open-loop schedule
            try:
                reply = await http.post(f"{url}/embeddings", json={"model": model, **body(INPUTS, i)})
            except httpx.HTTPError as exc:
                errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
                return
            if reply.status_code == 200 and len(reply.json()["data"]) == INPUTS:
                latencies.append((time.monotonic() - scheduled) * 1000)
                if "x-sluice-overhead-ms" in reply.headers:
                    overheads.append(float(reply.headers["x-sluice-overhead-ms"]))
            else:
                errors[f"HTTP {reply.status_code}"] = errors.get(f"HTTP {reply.status_code}", 0) + 1

        await asyncio.gather(*(one(i) for i in range(total)))
    latencies.sort()
    return {"sent": total, "ok": len(latencies), "errors": errors,
            "p50": statistics.median(latencies), "p90": latencies[int(len(latencies) * 0.9)],
            "p99": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
            "overhead_p50": statistics.median(overheads) if overheads else None}


async def burst(url: str, model: str, key: str, n: int, patience: float) -> dict[str, Any]:
    limits = httpx.Limits(max_connections=n + 10, max_keepalive_connections=n + 10)
    headers = {"authorization": f"Bearer {key}", "x-sluice-max-wait": f"{patience:g}"}
    async with httpx.AsyncClient(timeout=patience + 30, limits=limits, headers=headers) as http:
        t0 = time.monotonic()

        async def one(i: int) -> tuple[int, float]:
            reply = await http.post(f"{url}/embeddings", json={"model": model, **body(BURST_INPUTS, i)})
            return reply.status_code, time.monotonic() - t0

        shots = await asyncio.gather(*(one(i) for i in range(n)))
    ok = [t for status, t in shots if status == 200]
    return {"sent": n, "ok": len(ok), "refused": n - len(ok), "wall_s": max(ok, default=0.0)}


def mock_stats(url: str) -> dict[str, Any]:
    return dict(httpx.get(f"{url}/_stats", timeout=5).json())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--logs", type=Path, default=None, help="where server logs go (default: a temp dir)")
    parser.add_argument("--quick", action="store_true", help="a few seconds per measurement (smoke test)")
    args = parser.parse_args()
    # --quick: a 2-second bucket at the provider, so twice its size drains in 4 s, not 20
    seconds, n, bucket_seconds = (2, BURST // 5, 2.0) if args.quick else (SECONDS, BURST, 10.0)
    tpm = BURST_TPM
    free = MockOptions("mock")
    bound = MockOptions("burst", settings=MockSettings(tpm=tpm, bucket_seconds=bucket_seconds))
    config = {
        "key_prefix": "bench-emb",
        "client_keys": [{"name": "bench", "key": KEY}],
        "accounts": [
            {"name": "free", "provider": "mock", "base_url": f"{free.url}/v1", "limits": {"concurrency": 256}},
            {"name": "tpm-bound", "provider": "mock", "base_url": f"{bound.url}/v1",
             "limits": {"tpm": tpm, "concurrency": 256}},
        ],
        "models": [
            {"name": "embed", "kind": "embedding", "route": [{"account": "free", "model": "mock-embed"}]},
            {"name": "embed-tpm", "kind": "embedding", "route": [{"account": "tpm-bound", "model": "mock-embed"}]},
        ],
        "queue": {"result_ttl_seconds": 60},
    }
    options = SystemOptions(config=config, embedded_redis="always", mocks=[free, bound], log_dir=args.logs,
                            log_level="WARNING")
    with System(options) as system:
        api_url = system.base_url
        print(f"constant rate: {RATE} rps x {seconds} s, {INPUTS} inputs of ~50 tokens, {DIMENSIONS} dims, base64")
        rows: dict[str, dict[str, Any]] = {}
        for target, url, model, key in (("direct", f"{free.url}/v1", "mock-embed", "x"),
                                        ("sluice", f"{api_url}/v1", "embed", KEY)):
            rows[target] = asyncio.run(constant_rate(url, model, key, seconds))
            row = rows[target]
            print(f"  {target:7} ok {row['ok']}/{row['sent']}  p50 {row['p50']:.2f} ms  p90 {row['p90']:.2f} ms  "
                  f"p99 {row['p99']:.2f} ms  errors {row['errors'] or 0}"
                  + (f"  self-reported overhead p50 {row['overhead_p50']:.2f} ms" if row["overhead_p50"] else ""))
        print(f"  added   p50 {rows['sluice']['p50'] - rows['direct']['p50']:+.2f} ms  "
              f"p99 {rows['sluice']['p99'] - rows['direct']['p99']:+.2f} ms")

        print(f"TPM-bound burst: {n} requests at once, ~{n * BURST_INPUTS * 50:,} tokens; "
              f"the provider allows {tpm:,} tpm (a {int(tpm * bucket_seconds / 60):,}-token bucket)")
        for target, url, model, key in (("direct", f"{bound.url}/v1", "mock-embed", "x"),
                                        ("sluice", f"{api_url}/v1", "embed-tpm", KEY)):
            httpx.post(f"{bound.url}/_reset", timeout=5).raise_for_status()  # full bucket, zero counters
            result = asyncio.run(burst(url, model, key, n, 120.0))
            stats = mock_stats(bound.url)
            print(f"  {target:7} ok {result['ok']}/{result['sent']}  refused {result['refused']}  "
                  f"wall {result['wall_s']:.1f} s  provider 200 {stats['requests'] - stats['responses_429']} / "
                  f"429 {stats['responses_429']}")


if __name__ == "__main__":
    main()
