"""Waiting on a request's work unless its client hangs up first.

Once the body is read, the next ASGI message a request can receive is its disconnect; racing the
work against it lets every path (whole answers, a queued stream's first event, embeddings) take
an abandoned request's job out of the queue instead of spending the account's budget on it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable
from typing import TypeVar

from starlette.types import Receive

T = TypeVar("T")


class ClientLeft(Exception):
    """The client hung up before the work was done; the work was cancelled."""


async def unless_client_leaves(work: Awaitable[T], receive: Receive) -> T:
    """`work`'s result, or ClientLeft once the client has hung up and `work` is cancelled."""
    result = asyncio.ensure_future(work)
    hangup = asyncio.ensure_future(receive())
    try:
        await asyncio.wait((result, hangup), return_when=asyncio.FIRST_COMPLETED)
    finally:
        hangup.cancel()
    if result.done():
        return result.result()
    result.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await result  # its own clean-up (withdrawing queued parts) runs before we answer
    raise ClientLeft
