"""What a bench run does: which rows, how long, at what rates (`--quick` shrinks it all)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

ROWS = ("rate", "max", "stream", "concurrent", "burst")
ROW_ALIASES = {"1": "rate", "2": "max", "3": "stream", "4": "concurrent", "5": "burst"}

@dataclass
class Plan:
    rows: list[str]
    rates: tuple[int, ...] = (50, 200)
    rate_seconds: float = 20.0  # per target, split over the rounds
    max_seconds: float = 15.0
    max_vus: int = 64
    stream_rate: float = 50.0
    stream_seconds: float = 20.0
    stream_tps: float = 50.0  # mock pacing for the stream row: 16 tokens, one every 20 ms
    conc_count: int = 2000
    conc_ramp: float = 1.0
    conc_latency_ms: float = 1500.0
    conc_tps: float = 0.0  # after the 1.5 s latency the whole answer at once: the row measures held connections
    rounds: int = 2
    warmup_seconds: float = 3.0
    timeout: str = "10s"
    burst_requests: int = 300
    soak: bool = False
    soak_seconds: float = 600.0
    soak_rate: int = 100  # non-stream requests/s
    soak_stream_rate: float = 10.0  # streams/s, at the same time
    soak_warmup_seconds: float = 60.0  # memory trend is read after this

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Plan:
        rows = list(ROWS)
        if args.only:
            rows = []
            for name in args.only.split(","):
                name = ROW_ALIASES.get(name.strip(), name.strip())
                if name not in ROWS:
                    raise SystemExit(f"bench: unknown row {name!r}; rows are {', '.join(ROWS)} (or 1-4)")
                rows.append(name)
        if args.no_concurrent and "concurrent" in rows:
            rows.remove("concurrent")
        # The soak is part of every full run (issue 5 asks for it); --only runs it with --soak.
        plan = cls(rows=rows, soak=args.soak or (not args.only and not args.no_soak))
        if args.quick:
            plan.rate_seconds = plan.max_seconds = plan.stream_seconds = 4.0
            plan.rounds = 1
            plan.warmup_seconds = 1.0
            plan.conc_count = min(plan.conc_count, 300)
            plan.soak_seconds = 20.0
            plan.burst_requests = 30
        if args.rounds:
            plan.rounds = args.rounds
        if args.concurrent_streams:
            plan.conc_count = args.concurrent_streams
        return plan

