"""Prometheus `/metrics`: this process's request counters plus the accounts' live Redis state.

Counters here are per API process (Prometheus sums them across processes); queue, in-flight,
bucket and upstream figures are read from Redis at scrape time, so every process reports the
same shared truth for them.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import redis.asyncio as aioredis

from shared.batches.report import metric_lines
from shared.config import Config
from shared.model import Timing, Usage
from shared.status import collect

BUCKETS_MS = (1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000)


class Histogram:
    def __init__(self) -> None:
        self.counts = [0] * (len(BUCKETS_MS) + 1)
        self.total = 0.0
        self.n = 0

    def observe(self, value_ms: float) -> None:
        for i, bound in enumerate(BUCKETS_MS):
            if value_ms <= bound:
                self.counts[i] += 1
                break
        else:
            self.counts[-1] += 1
        self.total += value_ms
        self.n += 1

    def lines(self, name: str, labels: str) -> list[str]:
        out, cumulative = [], 0
        for bound, count in zip((*BUCKETS_MS, float("inf")), self.counts, strict=True):
            cumulative += count
            le = "+Inf" if bound == float("inf") else f"{bound / 1000:g}"
            out.append(f'{name}_bucket{{{labels}{"," if labels else ""}le="{le}"}} {cumulative}')
        out.append(f"{name}_sum{{{labels}}} {self.total / 1000:.6f}")
        out.append(f"{name}_count{{{labels}}} {self.n}")
        return out


class Metrics:
    def __init__(self) -> None:
        self.requests: Counter[tuple[str, str, str, int]] = Counter()  # client, model, dialect, status
        self.tokens: Counter[tuple[str, str]] = Counter()  # client, in|out
        self.queue_wait: dict[str, Histogram] = {}  # by model
        self.overhead = Histogram()

    def request(self, client: str, model: str, dialect: str, status: int) -> None:
        self.requests[(client, model, dialect, status)] += 1

    def usage(self, client: str, usage: Usage) -> None:
        self.tokens[(client, "in")] += usage.input_tokens
        self.tokens[(client, "out")] += usage.output_tokens

    def timing(self, model: str, timing: Timing, overhead_ms: float) -> None:
        self.queue_wait.setdefault(model, Histogram()).observe(timing.queue_ms)
        self.overhead.observe(overhead_ms)

    async def render(self, config: Config, client: aioredis.Redis) -> bytes:
        lines = [
            "# TYPE sluice_requests_total counter",
            *(f'sluice_requests_total{{client="{c}",model="{m}",dialect="{d}",status="{s}"}} {n}'
              for (c, m, d, s), n in sorted(self.requests.items())),
            "# TYPE sluice_client_tokens_total counter",
            *(f'sluice_client_tokens_total{{client="{c}",direction="{d}"}} {n}'
              for (c, d), n in sorted(self.tokens.items())),
            "# TYPE sluice_queue_wait_seconds histogram",
        ]
        for model, hist in sorted(self.queue_wait.items()):
            lines += hist.lines("sluice_queue_wait_seconds", f'model="{model}"')
        lines += ["# TYPE sluice_overhead_seconds histogram", *self.overhead.lines("sluice_overhead_seconds", "")]
        report = await collect(config, client)
        lines += _account_lines(report["accounts"])
        lines += metric_lines(report)
        return ("\n".join(lines) + "\n").encode()


def _account_lines(accounts: list[dict[str, Any]]) -> list[str]:
    gauges: dict[str, list[str]] = {
        "sluice_queue_depth": [], "sluice_in_flight": [], "sluice_bucket_requests_left": [],
        "sluice_bucket_tokens_left": [], "sluice_blocked_seconds": [], "sluice_live_workers": [],
        "sluice_dead_letters": [],
    }
    counters: dict[str, list[str]] = {"sluice_account_events_total": [], "sluice_upstream_responses_total": [],
                                      "sluice_upstream_tokens_total": []}
    for a in accounts:
        acct = f'account="{a["account"]}"'
        for priority, depth in a["queue"].items():
            gauges["sluice_queue_depth"].append(f'sluice_queue_depth{{{acct},priority="{priority}"}} {depth}')
        gauges["sluice_in_flight"].append(f"sluice_in_flight{{{acct}}} {a['in_flight']}")
        for dim, name in (("requests", "sluice_bucket_requests_left"), ("tokens", "sluice_bucket_tokens_left")):
            if a["left_now"][dim] is not None:
                gauges[name].append(f"{name}{{{acct}}} {a['left_now'][dim]}")
        gauges["sluice_blocked_seconds"].append(f"sluice_blocked_seconds{{{acct}}} {a['blocked_for_s']}")
        gauges["sluice_live_workers"].append(f"sluice_live_workers{{{acct}}} {a['live_workers']}")
        gauges["sluice_dead_letters"].append(f"sluice_dead_letters{{{acct}}} {a['dead_letters']}")
        for key, value in sorted(a["counters"].items()):
            if key.startswith("http_"):
                counters["sluice_upstream_responses_total"].append(
                    f'sluice_upstream_responses_total{{{acct},status="{key[5:]}"}} {value}')
            elif key.startswith(("tokens_in:", "tokens_out:")):
                direction, _, model = key.partition(":")
                counters["sluice_upstream_tokens_total"].append(
                    f'sluice_upstream_tokens_total{{{acct},model="{model}",direction="{direction[7:]}"}} {value}')
            else:
                counters["sluice_account_events_total"].append(
                    f'sluice_account_events_total{{{acct},event="{key}"}} {value}')
    lines: list[str] = []
    for name, rows in gauges.items():
        lines += [f"# TYPE {name} gauge", *rows]
    for name, rows in counters.items():
        lines += [f"# TYPE {name} counter", *rows]
    return lines
