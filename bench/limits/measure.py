"""Figures from the outcomes: paced rates, windows, on/off cycles, percentiles, counters."""

from __future__ import annotations

import bisect
import itertools
import math
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from bench.limits.load import Outcome


def completed_between(outcomes: Iterable[Outcome], start: float, end: float) -> list[Outcome]:
    return sorted((o for o in outcomes if o.ok and start <= o.done < end), key=lambda o: o.done)


def paced_rate(done: list[Outcome], cost: Callable[[Outcome], float]) -> float | None:
    """Per-minute rate from the spacing of admissions: a paced limiter (GCRA, no burst) starts job
    k+1 exactly cost(k) x interval after job k, so sum(cost of all but the last) / (last - first)
    is the admitted rate without the +-1-job quantization of counting inside a fixed window."""
    if len(done) < 2:
        return None
    span = done[-1].done - done[0].done
    if span <= 0:
        return None
    return sum(cost(o) for o in done[:-1]) / span * 60


def max_in_window(times: list[float], width: float) -> int:
    times = sorted(times)
    best = 0
    for i, t in enumerate(times):
        best = max(best, bisect.bisect_left(times, t + width) - i)
    return best


@dataclass(slots=True)
class Cycles:
    """Answers that come in on/off bursts: `count` whole cycles (pause to pause)."""

    count: int
    rate: float | None  # answers per minute over the whole cycles
    period: float  # median cycle length, s
    pause: float  # median silent gap, s
    per_cycle: float  # median answers per cycle


def on_off_cycles(times: list[float], after: float, min_gap: float = 2.0) -> Cycles:
    """Cycles that start (first answer after a pause longer than `min_gap`) at or after `after`."""
    times = sorted(times)
    starts = [i for i in range(1, len(times)) if times[i] - times[i - 1] > min_gap and times[i] >= after]
    if len(starts) < 2:
        return Cycles(0, None, 0.0, 0.0, 0.0)
    first, last = times[starts[0]], times[starts[-1]]
    periods = [times[b] - times[a] for a, b in itertools.pairwise(starts)]
    sizes = [float(b - a) for a, b in itertools.pairwise(starts)]
    pauses = [times[i] - times[i - 1] for i in starts]
    return Cycles(len(starts) - 1, (starts[-1] - starts[0]) / (last - first) * 60, percentile(periods, 0.5),
                  percentile(pauses, 0.5), percentile(sizes, 0.5))


def window_range(times: list[float], width: float, start: float, end: float) -> tuple[int, int]:
    """Fewest and most of `times` in any window [t, t + width) with start <= t <= end - width."""
    times = sorted(times)
    counts = []
    t = start
    while t <= end - width + 1e-9:
        counts.append(bisect.bisect_left(times, t + width) - bisect.bisect_left(times, t))
        t += 0.05
    return (min(counts), max(counts)) if counts else (0, 0)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def status_counts(outcomes: Iterable[Outcome]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for o in outcomes:
        key = str(o.status) if o.status else "error"
        counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items()))


def machine_load() -> str:
    one, five, _ = os.getloadavg()
    return f"{one:.2f} (1 min) / {five:.2f} (5 min) on {os.cpu_count()} cores"


def per_bucket(outcomes: list[Outcome], width: float, until: float) -> str:
    counts = [0] * max(1, math.ceil(until / width))
    for o in outcomes:
        if o.ok and o.done < until:
            counts[min(len(counts) - 1, int(o.done // width))] += 1
    return " ".join(str(c) for c in counts)


def account_counters(status: dict[str, Any]) -> dict[str, dict[str, int]]:
    return {a["account"]: dict(a["counters"]) for a in status["accounts"]}


def fmt_counters(counters: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(counters.items())) or "none"


def failures(outcomes: list[Outcome]) -> str:
    bad = [o for o in outcomes if not o.ok]
    if not bad:
        return "none"
    sample = "; ".join(f"#{o.index} {o.status or 'error'} {o.error[:120]!r}" for o in bad[:3])
    return f"{len(bad)} ({status_counts(bad)}), e.g. {sample}"


