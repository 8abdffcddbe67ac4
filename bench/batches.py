"""Bench row for batches: `python -m bench.batches` (from the repository root).

1. A 50,000-line file is uploaded and the batch accepted (validated): the time, and the API's peak RSS.
2. A 20,000-line batch over 2 accounts x 6,000 rpm against mock providers enforcing those limits:
   the time to finish against the 100 s the limits allow, and the upstream 429s (target 0).
3. Interactive requests to the same model while it runs (a few per second): queue wait p50/p99
   from the `server-timing` header, beside the same requests with no batch running.
4. Peak RSS (VmHWM) of every process.

Self-contained: it starts its own redis-server (AOF on), two mocks, the API, a worker per account
and one batch coordinator on free loopback ports (one `System`), and stops them at the end.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import redis

from shared.mock.settings import MockSettings
from shared.system import MockOptions, System, SystemOptions

KEY = "sk-bench"
MODEL = "bench-model"


def peak_rss_mib(pid: int) -> float:
    """VmHWM: the process's peak resident set since it started."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


class Stack:
    """Two mocks (one per account, each enforcing `rpm`), a private redis-server with AOF, a worker
    per account, one batch coordinator and the API, as one `System`."""

    def __init__(self, work: Path, rpm: int, concurrency: int, latency_ms: float) -> None:
        self.mocks = [MockOptions(f"mock-{i}", settings=MockSettings(rpm=rpm, latency_ms=latency_ms, output_tokens=8))
                      for i in range(2)]
        config = {
            "key_prefix": "bench",
            "client_keys": [{"name": "bench", "key": KEY}],
            "accounts": [{"name": f"acct-{i}", "provider": "mock", "base_url": f"{m.url}/v1",
                          "limits": {"rpm": rpm, "concurrency": concurrency}} for i, m in enumerate(self.mocks)],
            "models": [{"name": MODEL, "route": [{"account": f"acct-{i}", "model": "mock-small"} for i in range(2)]}],
            "batches": {"data_dir": str(work / "data"), "window": 1024},
        }
        self.system = System(SystemOptions(config=config, embedded_redis="always", redis_appendonly=True,
                                           mocks=self.mocks, batchers=1, log_dir=work, log_level="WARNING"))
        self.system.start()
        self.base = self.system.base_url
        self.http = httpx.Client(base_url=self.base, headers={"authorization": f"Bearer {KEY}"}, timeout=300)

    def mock_stats(self) -> list[dict[str, Any]]:
        return [httpx.get(f"{m.url}/_stats", timeout=10).json() for m in self.mocks]

    def reset_mocks(self) -> None:
        for m in self.mocks:
            httpx.post(f"{m.url}/_reset", timeout=10)

    def peaks(self) -> dict[str, float]:
        out = {child.label: peak_rss_mib(child.pid) for child in self.system.children}
        if self.system.embedded is not None:
            out["redis-server"] = peak_rss_mib(self.system.embedded.process.pid)
        return out

    def stop(self) -> None:
        self.http.close()
        self.system.stop()


def batch_file(n: int) -> bytes:
    return b"".join(json.dumps({
        "custom_id": f"req-{i}", "method": "POST", "url": "/v1/chat/completions",
        "body": {"model": MODEL, "messages": [{"role": "user", "content": f"Summarise item {i} in one line."}],
                 "max_tokens": 8}}, separators=(",", ":")).encode() + b"\n" for i in range(n))


def submit(stack: Stack, n: int) -> tuple[str, float, float]:
    """Uploads and creates; returns (batch id, upload seconds, upload-to-accepted seconds)."""
    content = batch_file(n)
    t0 = time.monotonic()
    file_id = stack.http.post("/v1/files", data={"purpose": "batch"},
                              files={"file": ("bench.jsonl", content)}).json()["id"]
    uploaded = time.monotonic() - t0
    batch = stack.http.post("/v1/batches", json={"input_file_id": file_id, "endpoint": "/v1/chat/completions",
                                                 "completion_window": "24h"}).json()
    while stack.http.get(f"/v1/batches/{batch['id']}").json()["status"] == "validating":
        time.sleep(0.05)  # polling the batch's status
    return batch["id"], uploaded, time.monotonic() - t0


def interactive(stack: Stack, rate: float, stop: threading.Event, waits: list[float]) -> None:
    """Chat requests at `rate` per second; collects each one's queue wait (server-timing)."""
    period = 1 / rate
    nxt = time.monotonic()
    with httpx.Client(base_url=stack.base, headers={"authorization": f"Bearer {KEY}"}, timeout=60) as client:
        while not stop.is_set():
            reply = client.post("/v1/chat/completions", json={
                "model": MODEL, "messages": [{"role": "user", "content": "interactive"}], "max_tokens": 8})
            timing = reply.headers.get("server-timing", "")
            for part in timing.split(","):
                name, _, dur = part.strip().partition(";dur=")
                if name == "queue":
                    waits.append(float(dur))
            nxt += period
            time.sleep(max(0.0, nxt - time.monotonic()))  # pacing the request rate


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1] if len(values) > 1 else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--accept-lines", type=int, default=50_000)
    parser.add_argument("--run-lines", type=int, default=20_000)
    parser.add_argument("--rpm", type=int, default=6_000, help="per account (two accounts)")
    parser.add_argument("--latency-ms", type=float, default=50.0, help="the mock's answer latency")
    parser.add_argument("--interactive-rps", type=float, default=2.0)
    parser.add_argument("--baseline-seconds", type=float, default=20.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="sluice-bench-batches-") as tmp:
        stack = Stack(Path(tmp), args.rpm, 64, args.latency_ms)
        try:
            rows = run(stack, args)
        finally:
            stack.stop()
    print(json.dumps(rows, indent=2))


def run(stack: Stack, args: argparse.Namespace) -> dict[str, Any]:
    rows: dict[str, Any] = {}
    # 1. a large file uploaded and accepted; the batch is then cancelled (it is not the run under test)
    big_id, upload_s, accepted_s = submit(stack, args.accept_lines)
    rows["accept"] = {"lines": args.accept_lines, "upload_s": round(upload_s, 2),
                      "upload_to_in_progress_s": round(accepted_s, 2), "api_peak_rss_mib": stack.peaks()["api"]}
    stack.http.post(f"/v1/batches/{big_id}/cancel")
    while stack.http.get(f"/v1/batches/{big_id}").json()["status"] != "cancelled":
        time.sleep(0.2)  # polling until the cancelled batch has been wound down
    # 2. interactive baseline, no batch running
    time.sleep(2)  # let the cancelled batch's in-flight lines drain from the buckets
    waits: list[float] = []
    stop = threading.Event()
    worker = threading.Thread(target=interactive, args=(stack, args.interactive_rps, stop, waits))
    worker.start()
    time.sleep(args.baseline_seconds)  # the baseline's measuring window
    stop.set()
    worker.join()
    rows["interactive_no_batch"] = {"n": len(waits), "queue_wait_p50_ms": round(pct(waits, 50), 2),
                                    "queue_wait_p99_ms": round(pct(waits, 99), 2)}
    # 3. the 20,000-line batch with interactive traffic beside it
    stack.reset_mocks()
    waits = []
    stop = threading.Event()
    batch_id, _, _ = submit(stack, args.run_lines)
    started = time.monotonic()
    worker = threading.Thread(target=interactive, args=(stack, args.interactive_rps, stop, waits))
    worker.start()
    lanes = redis.Redis.from_url(stack.system.redis_url)
    dry = samples = 0
    while True:
        batch = stack.http.get(f"/v1/batches/{batch_id}").json()
        if batch["status"] in ("completed", "failed", "expired", "cancelled"):
            break
        if batch["request_counts"]["completed"] < args.run_lines * 0.95:  # the tail drains by design
            samples += 1
            dry += any(lanes.zcard(f"bench:{{acct-{i}}}:bready") == 0 for i in range(2))
        time.sleep(0.5)  # polling the batch's progress
    lanes.close()  # type: ignore[no-untyped-call]
    elapsed = time.monotonic() - started
    stop.set()
    worker.join()
    stats = stack.mock_stats()
    ideal = args.run_lines / (2 * args.rpm / 60)
    rows["batch"] = {"lines": args.run_lines, "status": batch["status"], "counts": batch["request_counts"],
                     "seconds": round(elapsed, 1), "limits_allow_s": round(ideal, 1),
                     "percent_of_ideal": round(100 * elapsed / ideal, 1),
                     "upstream_requests": sum(s["requests"] for s in stats),
                     # first to last upstream call: the pace the workers held, without start-up and finalize
                     "upstream_span_s": round(max(s["last_request_at"] for s in stats)
                                              - min(s["first_request_at"] for s in stats), 1),
                     "upstream_429": sum(s["responses_429"] for s in stats),
                     # how often an account's batch lane was found empty before the tail: feeding fell behind
                     "batch_lane_dry_samples": f"{dry}/{samples}"}
    rows["interactive_with_batch"] = {"n": len(waits), "queue_wait_p50_ms": round(pct(waits, 50), 2),
                                      "queue_wait_p99_ms": round(pct(waits, 99), 2)}
    rows["peak_rss_mib"] = {k: round(v, 1) for k, v in stack.peaks().items()}
    return rows


if __name__ == "__main__":
    main()
