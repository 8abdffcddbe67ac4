"""Load for the scenarios: non-streaming chat requests that may wait up to 10 minutes in the queue."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import httpx

CLIENT_KEY = "sk-bench-limits"
MODEL = "bench-model"
UPSTREAM_MODEL = "mock-small"
MAX_WAIT_SECONDS = 600


@dataclass(slots=True)
class Outcome:
    index: int
    kind: str
    sent: float  # seconds since the scenario's t0
    done: float
    status: int  # 0 = transport error or given up by the bench
    prompt_tokens: int = 0
    completion_tokens: int = 0
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.status == 200

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


def make_client() -> httpx.AsyncClient:
    return httpx.AsyncClient(
        timeout=httpx.Timeout(MAX_WAIT_SECONDS + 300, connect=30),
        limits=httpx.Limits(max_connections=2000, max_keepalive_connections=2000),
        headers={"authorization": f"Bearer {CLIENT_KEY}", "x-sluice-max-wait": str(MAX_WAIT_SECONDS)},
    )


async def chat(http: httpx.AsyncClient, base_url: str, t0: float, index: int, kind: str, text: str,
               max_tokens: int) -> Outcome:
    body = {"model": MODEL, "messages": [{"role": "user", "content": text}], "max_tokens": max_tokens}
    sent = time.monotonic() - t0
    try:
        reply = await http.post(f"{base_url}/v1/chat/completions", json=body)
    except httpx.HTTPError as exc:
        return Outcome(index, kind, sent, time.monotonic() - t0, 0, error=f"{type(exc).__name__}: {exc}")
    done = time.monotonic() - t0
    if reply.status_code != 200:
        return Outcome(index, kind, sent, done, reply.status_code, error=reply.text[:300])
    usage = reply.json().get("usage") or {}
    return Outcome(index, kind, sent, done, 200, int(usage.get("prompt_tokens", 0)),
                   int(usage.get("completion_tokens", 0)))


async def keep_busy(start_one: Callable[[int], Coroutine[Any, Any, Outcome]], outstanding: int,
                    until: float, max_requests: int) -> list[asyncio.Task[Outcome]]:
    """Keeps `outstanding` requests open (so the account's queue never runs dry) until the monotonic
    time `until`; returns every task started, some possibly still running."""
    tasks: list[asyncio.Task[Outcome]] = []
    pending: set[asyncio.Task[Outcome]] = set()
    while time.monotonic() < until and len(tasks) < max_requests:
        while len(pending) < outstanding and len(tasks) < max_requests:
            task = asyncio.create_task(start_one(len(tasks)))
            tasks.append(task)
            pending.add(task)
        _, pending = await asyncio.wait(pending, timeout=max(0.0, until - time.monotonic()),
                                        return_when=asyncio.FIRST_COMPLETED)
    return tasks


async def drain(tasks: list[asyncio.Task[Outcome]], wait_s: float, t0: float) -> list[Outcome]:
    """Waits (bounded) for every request; one still open at the deadline counts as a failure."""
    if tasks:
        await asyncio.wait(tasks, timeout=wait_s)
    outcomes = []
    for i, task in enumerate(tasks):
        if task.done():
            outcomes.append(task.result())
        else:
            task.cancel()
            now = time.monotonic() - t0
            outcomes.append(Outcome(i, "?", now, now, 0, error=f"still open after the {wait_s:.0f} s drain"))
    return outcomes


async def at(t0: float, offset: float, action: Callable[[], Awaitable[Any]]) -> Any:
    """Runs `action` at monotonic time t0 + offset."""
    await asyncio.sleep(max(0.0, t0 + offset - time.monotonic()))
    return await action()



def prompt(index: int, chars: int) -> str:
    """A user message of `chars` characters: about chars/4 tokens by the mock's count."""
    head = f"Request {index}: "
    filler = "alpha bravo charlie delta echo foxtrot golf hotel "
    body = head + filler * (chars // len(filler) + 1)
    return body[:chars]

