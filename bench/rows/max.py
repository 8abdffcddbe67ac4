"""Row 2: the maximum, closed loop: a fixed number of connections back to back."""

from __future__ import annotations

from typing import Any

from bench.harness import Bench, cpu_of, merge_errors, pct
from bench.log import log


def row_max(bench: Bench) -> dict[str, Any]:
    """Row 2: closed loop, VUS connections back to back."""
    plan = bench.plan
    bench.mock_config(latency_ms=0, tokens_per_second=0)
    per_round = plan.max_seconds / plan.rounds
    acc: dict[str, dict[str, Any]] = {t.name: {"svc": [], "errors": {}, "sent": 0, "ok": 0, "cpu": {},
                                               "seconds": 0.0, "mock_cpu": 0.0, "drain": 0.0} for t in bench.targets}
    for r in range(plan.rounds):
        for target in bench.order(r):
            log(f"max throughput, {plan.max_vus} connections, round {r + 1}/{plan.rounds}: {target.name} "
                f"for {per_round:g} s")
            res = bench.run_k6(target, f"max-r{r}", per_round, vus=plan.max_vus)
            a = acc[target.name]
            a["svc"] += res["svc"]
            a["sent"] += res["sent"]
            a["ok"] += res["ok"]
            a["seconds"] += per_round
            a["mock_cpu"] += res["cpu"].get("mock", 0.0)
            merge_errors(a["errors"], res["errors"])
            for name, seconds in cpu_of(target, res["cpu"]).items():
                a["cpu"][name] = a["cpu"].get(name, 0.0) + seconds
            a["drain"] = max(a["drain"], bench.settle())
    return {name: {"svc_ms": pct(a["svc"]), "errors": a["errors"], "sent": a["sent"], "ok": a["ok"],
                   "drain_s": a["drain"],
                   "rps": a["ok"] / a["seconds"] if a["seconds"] else 0.0, "cpu_s": a["cpu"],
                   "mock_cpu_s": a["mock_cpu"]}
            for name, a in acc.items()}

