"""Row 1: open loop at constant rates (k6's constant-arrival-rate), zero-delay mock."""

from __future__ import annotations

from typing import Any

from bench.harness import Bench, cpu_of, merge_errors, pct
from bench.log import log


def row_rate(bench: Bench) -> dict[str, Any]:
    """Row 1: open loop at constant rates, zero-delay mock."""
    plan = bench.plan
    bench.mock_config(latency_ms=0, tokens_per_second=0)
    out: dict[str, Any] = {}
    per_round = plan.rate_seconds / plan.rounds
    for rate in plan.rates:
        acc: dict[str, dict[str, Any]] = {t.name: {"svc": [], "sched": [], "reported": [], "errors": {},
                                                   "sent": 0, "ok": 0, "cpu": {}, "drain": 0.0}
                                          for t in bench.targets}
        for r in range(plan.rounds):
            for target in bench.order(r):
                log(f"rate {rate} rps, round {r + 1}/{plan.rounds}: {target.name} for {per_round:g} s")
                res = bench.run_k6(target, f"rate{rate}-r{r}", per_round, rate=rate)
                a = acc[target.name]
                a["svc"] += res["svc"]
                a["sched"] += res["sched"]
                a["reported"] += res.get("reported", [])
                a["sent"] += res["sent"]
                a["ok"] += res["ok"]
                merge_errors(a["errors"], res["errors"])
                for name, seconds in cpu_of(target, res["cpu"]).items():
                    a["cpu"][name] = a["cpu"].get(name, 0.0) + seconds
                a["drain"] = max(a["drain"], bench.settle())
        out[str(rate)] = {name: {"svc_ms": pct(a["svc"]), "sched_ms": pct(a["sched"]), "drain_s": a["drain"],
                                 "reported_overhead_ms": pct(a["reported"]), "errors": a["errors"],
                                 "sent": a["sent"], "ok": a["ok"], "cpu_s": a["cpu"]}
                          for name, a in acc.items()}
    return out

