"""Row 3: open-loop streams; TTFT and total time; every content chunk accounted for."""

from __future__ import annotations

from typing import Any

from bench.harness import Bench, cpu_of, merge_errors, pct
from bench.log import log
from bench.procs import CpuMeter
from bench.streams import expected_answer, stream_client


def row_stream(bench: Bench) -> dict[str, Any]:
    """Row 3: open-loop streams; TTFT and total time; every content chunk accounted for."""
    plan = bench.plan
    bench.mock_config(latency_ms=0, tokens_per_second=plan.stream_tps)
    text, chunks = expected_answer(bench)
    per_round = plan.stream_seconds / plan.rounds
    runs: dict[str, list[dict[str, Any]]] = {t.name: [] for t in bench.targets}
    cpu: dict[str, dict[str, float]] = {t.name: {} for t in bench.targets}
    drain = {t.name: 0.0 for t in bench.targets}
    for r in range(plan.rounds):
        for target in bench.order(r):
            log(f"streams at {plan.stream_rate:g}/s, round {r + 1}/{plan.rounds}: {target.name} for {per_round:g} s")
            meter = CpuMeter(bench.all_groups())
            meter.start()
            runs[target.name].append(stream_client(
                bench, target, f"stream-r{r}", ["rate", "--rate", f"{plan.stream_rate:g}", "--duration",
                                                f"{per_round:g}"], text, chunks, 30))
            for name, seconds in cpu_of(target, meter.stop()).items():
                cpu[target.name][name] = cpu[target.name].get(name, 0.0) + seconds
            drain[target.name] = max(drain[target.name], bench.settle())
    bench.mock_config(latency_ms=0, tokens_per_second=0)
    out: dict[str, Any] = {"expected_chunks": chunks, "tokens_per_second": plan.stream_tps}
    for name, summaries in runs.items():
        out[name] = _merge_stream_runs(summaries)
        out[name]["cpu_s"] = cpu[name]
        out[name]["drain_s"] = drain[name]
    return out


def _merge_stream_runs(summaries: list[dict[str, Any]]) -> dict[str, Any]:
    """Pools the rounds: counts add up, percentiles come from the raw per-stream `values`."""
    merged: dict[str, Any] = {"sent": 0, "ok": 0, "errors": {}, "chunks_received": 0, "chunks_expected": 0,
                              "max_open": 0}
    for s in summaries:
        merged["sent"] += s.get("sent", 0)
        merged["ok"] += s.get("ok", 0)
        merge_errors(merged["errors"], s.get("errors", {}))
        merged["chunks_received"] += s.get("chunks_received") or 0
        merged["chunks_expected"] += s.get("chunks_expected") or 0
        merged["max_open"] = max(merged["max_open"], s.get("max_open", 0))
    for key in ("ttft_ms", "ttft_sched_ms", "total_ms", "total_sched_ms", "lag_ms"):
        values = [v for s in summaries for v in s.get("values", {}).get(key, [])]
        merged[key] = pct(values)
    return merged

