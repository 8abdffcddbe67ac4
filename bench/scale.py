"""Scale-out on one machine: N API processes x M workers per account, one Redis vs a Cluster.

    .venv/bin/python -m bench.scale [--seconds 10] [--apis 1,2,4] [--workers 1,3] [--vus 64]

For each deployment (a private redis-server; a 3-primary Cluster with replicas, from
shared/redis/topology.py) it starts a whole system (`shared.system.System`: a zero-delay mock, two
accounts routed by one model, N API processes on one port) and measures:

  throughput   k6 closed loop (bench/k6/chat.js, `--vus` connections back to back, non-streaming)
               for `--seconds`, per N, with 1 worker per account and no limits: answered/s, p50/p99
  limits       the same load against accounts limited to 1200 rpm each, per M workers per account
               (N = 2): each account's claims between two reads of its counters, against the
               GCRA bound (rate x elapsed + 2: the pace plus one request of tolerance) and 95 %
               of rate x elapsed

Prints markdown tables for docs/benchmarks.md; raw k6 output goes to bench/results/scale-<time>/.
On a 2-CPU machine the load generator, the mock, every Sluice process and every Redis node share
the same two cores: read the rows as "where the machine's CPU is the bound", not as capacity.
"""

from __future__ import annotations

import argparse
import subprocess
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

import redis

from bench.harness import parse_k6_csv, pct
from bench.tools import ensure_k6
from shared.redis.client import connect_sync
from shared.redis.embedded import EmbeddedRedis
from shared.redis.topology import LocalCluster, modern_redis_binary
from shared.system import MockOptions, System, SystemOptions

ROOT = Path(__file__).resolve().parent.parent
KEY = "sk-scale-bench"
ACCOUNTS = ("acct-a", "acct-b")
LIMIT_RPM = 1200


def config(limits: dict[str, Any], mock: MockOptions) -> dict[str, Any]:
    return {
        "key_prefix": f"scale{int(time.time() * 1000) % 10**8}",
        "client_keys": [{"name": "bench", "key": KEY}],
        "accounts": [{"name": a, "provider": "mock", "base_url": f"{mock.url}/v1", "limits": dict(limits)}
                     for a in ACCOUNTS],
        "models": [{"name": "bench-model", "route": [{"account": a, "model": "mock-small"} for a in ACCOUNTS]}],
        "queue": {"result_ttl_seconds": 60, "max_wait_seconds": 120},
    }


def k6(binary: Path, out: Path, url: str, seconds: float, vus: int) -> dict[str, Any]:
    env = {"TARGET_URL": f"{url}/v1", "MODEL": "bench-model", "KEY": KEY, "DURATION": f"{seconds:g}s",
           "VUS": str(vus), "TIMEOUT": "60s", "K6_NO_USAGE_REPORT": "true", "PATH": "/usr/bin:/bin"}
    argv = [str(binary), "run", "--quiet", "--no-usage-report", "--no-color", "--out", f"csv={out}.csv",
            str(ROOT / "bench" / "k6" / "chat.js")]
    with open(f"{out}-k6.log", "wb") as log:
        subprocess.run(argv, env=env, stdout=log, stderr=subprocess.STDOUT, timeout=seconds + 120, check=False)
    return parse_k6_csv(Path(f"{out}.csv"))


def claimed(client: redis.Redis, prefix: str, account: str) -> int:
    return int(client.hget(f"{prefix}:{{{account}}}:stats", "claimed") or 0)  # type: ignore[arg-type]


def with_system(url: str, results: Path, label: str, limits: dict[str, Any], apis: int, workers: int,
                body: Callable[[System, str], dict[str, Any]]) -> dict[str, Any]:
    mock = MockOptions("mock")
    cfg = config(limits, mock)
    system = System(SystemOptions(config=cfg, redis_url=url, embedded_redis="never", mocks=[mock],
                                  workers_per_account=workers, api_processes=apis, log_dir=results / label,
                                  log_level="WARNING", ready_timeout=60))
    system.start()
    try:
        return body(system, str(cfg["key_prefix"]))
    finally:
        system.stop()


def load(binary: Path, out: Path, args: argparse.Namespace, system: System, prefix: str) -> dict[str, Any]:
    k6(binary, out.with_name(out.name + "-warm"), system.base_url, 2, args.vus)
    return k6(binary, out, system.base_url, args.seconds, args.vus)


def limited(binary: Path, out: Path, args: argparse.Namespace, system: System, prefix: str) -> dict[str, Any]:
    """Claims in a window that lies wholly inside the load: k6 runs `seconds` + 4 s, the counters
    are read 2 s in and `seconds` later."""
    client = connect_sync(system.redis_url)
    try:
        k6(binary, out.with_name(out.name + "-warm"), system.base_url, 3, args.vus)  # limiter saturated first
        with ThreadPoolExecutor(1) as pool:
            running = pool.submit(k6, binary, out, system.base_url, args.seconds + 4, args.vus)
            time.sleep(2)  # into the run, past k6's start-up
            before = {a: claimed(client, prefix, a) for a in ACCOUNTS}
            started = time.monotonic()
            time.sleep(args.seconds)  # the measured window
            after = {a: claimed(client, prefix, a) for a in ACCOUNTS}
            elapsed = time.monotonic() - started
            running.result()
    finally:
        client.close()  # type: ignore[no-untyped-call]
    return {"claims": {a: after[a] - before[a] for a in ACCOUNTS}, "elapsed": elapsed}


def run(args: argparse.Namespace) -> None:
    results = ROOT / "bench" / "results" / f"scale-{time.strftime('%Y%m%d-%H%M%S')}"
    results.mkdir(parents=True, exist_ok=True)
    binary = ensure_k6(results)
    deployments: list[tuple[str, Callable[[], Any]]] = [("one redis-server", EmbeddedRedis)]
    if modern_redis_binary():
        deployments.append(("cluster 3x2", LocalCluster))
    throughput: list[str] = []
    limits: list[str] = []
    for name, make in deployments:
        server = make()
        try:
            for n in args.apis:
                tag = f"tp-{name[:3]}-{n}"
                res = with_system(server.url, results, tag, {"concurrency": 256}, n, 1,
                                  partial(load, binary, results / tag, args))
                svc = pct(res["svc"])
                errors = sum(res["errors"].values()) if isinstance(res["errors"], dict) else 0
                throughput.append(f"| {name} | {n} | {res['ok'] / args.seconds:.0f} | {svc.get('p50', 0):.1f} | "
                                  f"{svc.get('p99', 0):.1f} | {errors} |")
                print(throughput[-1], flush=True)
            for m in args.workers:
                tag = f"lim-{name[:3]}-{m}"
                res = with_system(server.url, results, tag, {"rpm": LIMIT_RPM, "concurrency": 256}, 2, m,
                                  partial(limited, binary, results / tag, args))
                allowed = LIMIT_RPM / 60 * res["elapsed"]
                for account, count in res["claims"].items():
                    ok = count <= allowed + 2 and count >= 0.95 * allowed
                    limits.append(f"| {name} | {m} | {account} | {count} | {allowed:.0f} | "
                                  f"{count / allowed * 100:.1f} % | {'yes' if ok else 'NO'} |")
                    print(limits[-1], flush=True)
        finally:
            server.stop()
    print(f"\nthroughput: {args.vus} connections back to back, {args.seconds:g} s, 1 worker per account, no limits")
    print("| deployment | API processes | answered/s | p50 ms | p99 ms | errors |\n|---|---|---|---|---|---|")
    print("\n".join(throughput))
    print(f"\nlimits: {LIMIT_RPM} rpm per account, 2 API processes, {args.vus} connections, {args.seconds:g} s")
    print("| deployment | workers per account | account | claims | allowed (rate x elapsed) | used | "
          "<= bound and >= 95 % |\n|---|---|---|---|---|---|---|")
    print("\n".join(limits))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--apis", type=lambda s: [int(x) for x in s.split(",")], default=[1, 2, 4])
    parser.add_argument("--workers", type=lambda s: [int(x) for x in s.split(",")], default=[1, 3])
    parser.add_argument("--vus", type=int, default=64)
    run(parser.parse_args())


if __name__ == "__main__":
    main()
