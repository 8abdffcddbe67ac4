"""The soak: Sluice alone for minutes under mixed load; memory of every process, and its trend."""

from __future__ import annotations

import json
import statistics
import subprocess
from typing import Any

import redis

from bench.harness import Bench, cpu_of, pct
from bench.log import log
from bench.procs import RssSampler
from bench.streams import expected_answer, stream_client_argv
from bench.tools import ROOT


def row_soak(bench: Bench) -> dict[str, Any]:
    """Soak: Sluice alone for SOAK seconds under mixed load (non-stream at a constant rate through
    k6, streams at a constant rate through our stream client, both at once); RSS of every Sluice
    process and Redis's own `used_memory` sampled every 5 s, and the trend after warm-up."""
    plan = bench.plan
    target = next(t for t in bench.targets if t.name == "sluice")
    bench.mock_config(latency_ms=0, tokens_per_second=0)
    text, chunks = expected_answer(bench)
    assert bench.redis is not None
    redis_client = redis.Redis.from_url(bench.redis.url)

    def used_memory() -> int:
        info: dict[str, Any] = redis_client.info("memory")  # type: ignore[assignment]  # sync client
        return int(info["used_memory"])

    log(f"soak: sluice at {plan.soak_rate} rps + {plan.soak_stream_rate:g} streams/s for {plan.soak_seconds:g} s")
    stream_out = bench.results / "soak-streams.json"
    argv = stream_client_argv(bench, target, stream_out, text, chunks, 30,
                              ["rate", "--rate", f"{plan.soak_stream_rate:g}", "--duration", f"{plan.soak_seconds:g}"])
    probes = {"redis used_memory": used_memory}
    with RssSampler(target.rss_groups, interval=5.0, keep_timeline=True, probes=probes) as rss, \
            open(bench.results / "soak-streams-client.log", "wb") as client_log:
        streams = subprocess.Popen(argv, stdout=client_log, stderr=subprocess.STDOUT, cwd=ROOT)
        res = bench.run_k6(target, "soak", plan.soak_seconds, rate=plan.soak_rate)
        streams.wait(timeout=600)
    redis_client.connection_pool.disconnect()
    stream_summary = json.loads(stream_out.read_text()) if stream_out.exists() else {
        "sent": 0, "ok": 0, "errors": {"stream client crashed": 1}}
    timeline = rss.timeline or []
    (bench.results / "soak-memory.json").write_text(json.dumps(timeline))
    warmup = min(plan.soak_warmup_seconds, plan.soak_seconds / 4)
    return {"rate": plan.soak_rate, "stream_rate": plan.soak_stream_rate, "seconds": plan.soak_seconds,
            "warmup_s": warmup, "svc_ms": pct(res["svc"]), "sched_ms": pct(res["sched"]),
            "errors": res["errors"], "sent": res["sent"], "ok": res["ok"], "cpu_s": cpu_of(target, res["cpu"]),
            "streams": {key: stream_summary.get(key) for key in
                        ("sent", "ok", "errors", "chunks_received", "chunks_expected", "ttft_sched_ms")},
            "memory": {name: memory_trend(timeline, name, warmup) for name in rss.peak}}


def memory_trend(timeline: list[tuple[float, dict[str, int]]], name: str, warmup: float) -> dict[str, Any]:
    """What one process's memory did after warm-up: the median of the first and of the last minute,
    the peak, and the least-squares slope. Growth is what a leak would show; a flat line, with
    the allocator's own jitter, is what steady state looks like."""
    points = [(t, v[name]) for t, v in timeline if name in v and t >= warmup]
    if len(points) < 4:
        return {"samples": len(points)}
    last_t = points[-1][0]
    first_minute = [v for t, v in points if t < warmup + 60] or [points[0][1]]
    last_minute = [v for t, v in points if t > last_t - 60] or [points[-1][1]]
    mean_t = sum(t for t, _ in points) / len(points)
    mean_v = sum(v for _, v in points) / len(points)
    var_t = sum((t - mean_t) ** 2 for t, _ in points)
    slope = sum((t - mean_t) * (v - mean_v) for t, v in points) / var_t if var_t else 0.0  # bytes per second
    start, end = statistics.median(first_minute), statistics.median(last_minute)
    growth = end - start
    # Steady: the last minute sits within 3 % (or 2 MiB, for small processes) of the first one.
    steady = growth <= max(2 * 2**20, 0.03 * start)
    return {"samples": len(points), "start": int(start), "end": int(end),
            "peak": max(v for _, v in points), "growth": int(growth),
            "slope_mib_per_min": slope * 60 / 2**20, "steady": steady}

