"""The timing headers every answer carries, and the figures that feed the latency metrics."""

from __future__ import annotations

import time

from shared.model import Timing


def timing_headers(t: Timing | None, started: float) -> tuple[dict[str, str], float]:
    """(headers, overhead ms). `x-sluice-overhead-ms` is everything but the provider's own time,
    queue wait included. For a stream the headers go out with its first event, so "the
    provider's own time" is its time to that first event."""
    total = (time.monotonic() - started) * 1000
    if t is None:
        return {"x-sluice-overhead-ms": f"{total:.2f}"}, total
    relay = max(0.0, (time.time() - t.done_at) * 1000)
    overhead = max(0.0, total - t.upstream_ms)
    timing = (f"queue;dur={t.queue_ms:.2f}, dispatch;dur={t.dispatch_ms:.2f}, upstream;dur={t.upstream_ms:.2f}, "
              f"relay;dur={relay:.2f}, total;dur={total:.2f}")
    return {"x-sluice-overhead-ms": f"{overhead:.2f}", "server-timing": timing}, overhead
