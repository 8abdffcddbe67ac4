"""Row 4: thousands of streams open at once against a slow mock; peak memory and errors."""

from __future__ import annotations

from typing import Any

from bench.harness import Bench, pct
from bench.log import log
from bench.procs import RssSampler
from bench.streams import expected_answer, stream_client


def row_concurrent(bench: Bench) -> dict[str, Any]:
    """Row 4: COUNT streams open at once against a 1.5 s-latency mock; peak RSS and errors."""
    plan = bench.plan
    bench.mock_config(latency_ms=plan.conc_latency_ms, tokens_per_second=plan.conc_tps)
    text, chunks = expected_answer(bench)
    out: dict[str, Any] = {"count": plan.conc_count, "latency_ms": plan.conc_latency_ms,
                           "tokens_per_second": plan.conc_tps}
    for target in bench.targets:
        log(f"{plan.conc_count} concurrent streams over {plan.conc_ramp:g} s: {target.name}")
        bench.settle()
        bench.mock_reset()
        with RssSampler(bench.all_groups(), interval=0.1) as rss:
            summary = stream_client(bench, target, "concurrent", [
                "concurrent", "--count", str(plan.conc_count), "--ramp", f"{plan.conc_ramp:g}"], text, chunks, 60)
        stats = bench.mock_stats()
        values = summary.pop("values", {})
        summary["total_ms"] = pct(values.get("total_ms", []))
        summary["mock_max_in_flight"] = stats.get("max_in_flight")
        summary["drain_s"] = bench.settle()
        summary["rss_peak"] = {g.name: rss.peak[g.name] for g in target.rss_groups}
        summary["rss_before"] = {g.name: rss.first.get(g.name, 0) for g in target.rss_groups}
        out[target.name] = summary
    bench.mock_config(latency_ms=0, tokens_per_second=0)
    return out

