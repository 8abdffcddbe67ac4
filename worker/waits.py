"""The claim loop's waits: each is bounded, and each ends early on what it waits for."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from typing import Any


async def within(awaitable: Coroutine[Any, Any, Any], seconds: float) -> None:
    """Waits for `awaitable` at most `seconds` (a timeout is the normal end, not an error)."""
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(awaitable, seconds)


async def either(first: asyncio.Event, second: asyncio.Event) -> None:
    """Until one of the two events is set."""
    waits = [asyncio.ensure_future(first.wait()), asyncio.ensure_future(second.wait())]
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiting in waits:
            waiting.cancel()
