"""Garbage-collector settings for long-running Sluice processes.

A process's start-up leaves tens of thousands of long-lived objects (modules, FastAPI routes,
pydantic and msgspec types, config). CPython's full collections walk all of them, and a
full collection that lands in the middle of a request shows up as a millisecond-scale spike in
p99 latency. Freezing the start-up heap moves those objects out of the collector's sight, so
later collections only walk what requests allocate.
"""

from __future__ import annotations

import gc


def freeze_startup_heap() -> None:
    """Call once, when start-up is complete and before serving traffic."""
    gc.collect()  # drop start-up garbage first, so it is not frozen along with the rest
    gc.freeze()
