"""The embeddings row: `python -m bench.embeddings` (about a minute; figures in docs/benchmarks.md).

Starts a private redis-server, the built-in mock provider, and Sluice (one API process, one worker
process per account), then runs two measurements, each against the mock directly (the baseline)
and through Sluice, with the same load:

1. Constant rate (open loop): RATE requests a second for SECONDS, each an OpenAI `/v1/embeddings`
   call with INPUTS texts of about 50 tokens, DIMENSIONS-value vectors, base64 (what the openai SDK
   asks for by default). Latency is from each request's scheduled send time; *added* is Sluice
   minus direct.
2. TPM-bound burst: BURST requests sent at once to an account whose provider allows BURST_TPM
   tokens a minute (`mock-upstream --tpm`, a bucket of ten seconds' worth); Sluice's account has the
   same `tpm`. The burst holds about twice the provider's bucket: direct, the provider refuses what
   does not fit; through Sluice, every request should succeed with 0 upstream 429s.

Only the standard library, httpx, PyYAML and Sluice's own modules; every process is a child of
this one and is stopped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

from shared.redis.embedded import EmbeddedRedis, free_port

ROOT = Path(__file__).resolve().parent.parent
KEY = "sk-bench-embeddings"
RATE = 50
SECONDS = 20
INPUTS = 8
DIMENSIONS = 256
TEXT = "Sluice queues every request and sends it when the provider key has room for it. " * 3  # ~50 tokens
BURST = 200
BURST_TPM = 240_000  # 4,000 tokens a second; the provider's bucket holds 40,000
BURST_INPUTS = 8  # 8 x ~50 tokens = ~400 tokens a request, 80,000 for the burst


class Proc:
    def __init__(self, name: str, args: list[str], logs: Path, env: dict[str, str]) -> None:
        self.log = open(logs / f"{name}.log", "ab")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen([sys.executable, "-m", "shared.cli", *args], cwd=ROOT, env=env,
                                        stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self.log.close()


def wait_ready(url: str, proc: Proc, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.process.poll() is not None:
            raise SystemExit(f"bench: a server exited early (see {proc.log.name})")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)  # polling a child process's readiness
    raise SystemExit(f"bench: {url} did not become ready")


def body(n: int, i: int) -> dict[str, Any]:
    return {"input": [f"{i}.{j} {TEXT}" for j in range(n)], "encoding_format": "base64", "dimensions": DIMENSIONS}


async def constant_rate(url: str, model: str, key: str) -> dict[str, Any]:
    total = RATE * SECONDS
    latencies: list[float] = []
    errors: dict[str, int] = {}
    limits = httpx.Limits(max_connections=256, max_keepalive_connections=256)
    async with httpx.AsyncClient(timeout=10, limits=limits, headers={"authorization": f"Bearer {key}"}) as http:
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
            else:
                errors[f"HTTP {reply.status_code}"] = errors.get(f"HTTP {reply.status_code}", 0) + 1

        await asyncio.gather(*(one(i) for i in range(total)))
    latencies.sort()
    return {"sent": total, "ok": len(latencies), "errors": errors,
            "p50": statistics.median(latencies), "p90": latencies[int(len(latencies) * 0.9)],
            "p99": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]}


async def burst(url: str, model: str, key: str, patience: float) -> dict[str, Any]:
    limits = httpx.Limits(max_connections=BURST + 10, max_keepalive_connections=BURST + 10)
    headers = {"authorization": f"Bearer {key}", "x-sluice-max-wait": f"{patience:g}"}
    async with httpx.AsyncClient(timeout=patience + 30, limits=limits, headers=headers) as http:
        t0 = time.monotonic()

        async def one(i: int) -> tuple[int, float]:
            reply = await http.post(f"{url}/embeddings", json={"model": model, **body(BURST_INPUTS, i)})
            return reply.status_code, time.monotonic() - t0

        shots = await asyncio.gather(*(one(i) for i in range(BURST)))
    ok = [t for status, t in shots if status == 200]
    return {"sent": BURST, "ok": len(ok), "refused": BURST - len(ok), "wall_s": max(ok, default=0.0)}


def mock_stats(url: str) -> dict[str, Any]:
    return dict(httpx.get(f"{url}/_stats", timeout=5).json())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--logs", type=Path, default=None, help="where server logs go (default: a temp dir)")
    args = parser.parse_args()
    logs = args.logs or Path(tempfile.mkdtemp(prefix="sluice-bench-embeddings-"))
    logs.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "SLUICE_LOG_LEVEL": "WARNING"}
    redis = EmbeddedRedis()
    procs: list[Proc] = []
    try:
        mock_port, burst_port, api_port = free_port(), free_port(), free_port()
        mock_url, burst_url = f"http://127.0.0.1:{mock_port}", f"http://127.0.0.1:{burst_port}"
        procs.append(Proc("mock", ["mock-upstream", "--port", str(mock_port)], logs, env))
        procs.append(Proc("mock-burst", ["mock-upstream", "--port", str(burst_port), "--tpm", str(BURST_TPM)],
                          logs, env))
        config = logs / "sluice-embeddings.yaml"
        config.write_text(yaml.safe_dump({
            "redis_url": redis.url, "key_prefix": "bench-emb",
            "client_keys": [{"name": "bench", "key": KEY}],
            "accounts": [
                {"name": "free", "provider": "mock", "base_url": f"{mock_url}/v1", "limits": {"concurrency": 256}},
                {"name": "tpm-bound", "provider": "mock", "base_url": f"{burst_url}/v1",
                 "limits": {"tpm": BURST_TPM, "concurrency": 256}},
            ],
            "models": [
                {"name": "embed", "kind": "embedding", "route": [{"account": "free", "model": "mock-embed"}]},
                {"name": "embed-tpm", "kind": "embedding", "route": [{"account": "tpm-bound", "model": "mock-embed"}]},
            ],
            "queue": {"result_ttl_seconds": 60},
        }, sort_keys=False))
        for account in ("free", "tpm-bound"):
            procs.append(Proc(f"worker-{account}", ["worker", "--account", account, "--config", str(config)],
                              logs, env))
        api = Proc("api", ["api", "--config", str(config), "--port", str(api_port)], logs, env)
        procs.append(api)
        api_url = f"http://127.0.0.1:{api_port}"
        for url, proc in ((f"{mock_url}/_stats", procs[0]), (f"{burst_url}/_stats", procs[1])):
            wait_ready(url, proc)
        wait_ready(f"{api_url}/readyz", api)

        print(f"constant rate: {RATE} rps x {SECONDS} s, {INPUTS} inputs of ~50 tokens, {DIMENSIONS} dims, base64")
        rows: dict[str, dict[str, Any]] = {}
        for target, url, model, key in (("direct", f"{mock_url}/v1", "mock-embed", "x"),
                                        ("sluice", f"{api_url}/v1", "embed", KEY)):
            rows[target] = asyncio.run(constant_rate(url, model, key))
            row = rows[target]
            print(f"  {target:7} ok {row['ok']}/{row['sent']}  p50 {row['p50']:.2f} ms  p90 {row['p90']:.2f} ms  "
                  f"p99 {row['p99']:.2f} ms  errors {row['errors'] or 0}")
        print(f"  added   p50 {rows['sluice']['p50'] - rows['direct']['p50']:+.2f} ms  "
              f"p99 {rows['sluice']['p99'] - rows['direct']['p99']:+.2f} ms")

        print(f"TPM-bound burst: {BURST} requests at once, ~{BURST * BURST_INPUTS * 50:,} tokens; "
              f"the provider allows {BURST_TPM:,} tpm (a {BURST_TPM // 6:,}-token bucket)")
        for target, url, model, key in (("direct", f"{burst_url}/v1", "mock-embed", "x"),
                                        ("sluice", f"{api_url}/v1", "embed-tpm", KEY)):
            httpx.post(f"{burst_url}/_reset", timeout=5).raise_for_status()  # full bucket, zero counters
            result = asyncio.run(burst(url, model, key, 120.0))
            stats = mock_stats(burst_url)
            print(f"  {target:7} ok {result['ok']}/{result['sent']}  refused {result['refused']}  "
                  f"wall {result['wall_s']:.1f} s  provider 200 {stats['requests'] - stats['responses_429']} / "
                  f"429 {stats['responses_429']}")
    finally:
        for proc in reversed(procs):
            proc.stop()
        redis.stop()


if __name__ == "__main__":
    main()
