"""An API process dies under 100 open streams: every client reconnects to another API process with
its last event id and gets the rest of its answer, whole, with nothing repeated.

The worker writes each stream to its record whoever listens (worker/writer.py); the API process
is only a reader, so killing it (SIGKILL: no drain, no goodbye) must cost the clients nothing but
a reconnect. Real processes: two API processes, one worker, redis-server, the mock provider.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from typing import Any

import httpx

from shared.redis.embedded import free_port
from tests.conftest import CLIENT_KEY, ROOT, SluiceSystem, wait_until

STREAMS = 100
MESSAGES: Any = [{"role": "user", "content": "tell me a long story"}]
HEADERS = {"authorization": f"Bearer {CLIENT_KEY}"}


class Client:
    """One streaming client: what it read before the crash, from where to resume, what it read after."""

    def __init__(self) -> None:
        self.resume_url = ""
        self.events: list[tuple[str, str]] = []  # (SSE id, data)
        self.started = asyncio.Event()

    async def read(self, reply: httpx.Response) -> None:
        event_id = ""
        async for line in reply.aiter_lines():
            if line.startswith("id: "):
                event_id = line[4:]
            elif line.startswith("data: "):
                self.events.append((event_id, line[6:]))
                self.started.set()

    async def first_leg(self, http: httpx.AsyncClient, base_url: str) -> None:
        body = {"model": "m", "messages": MESSAGES, "stream": True}
        try:
            async with http.stream("POST", f"{base_url}/v1/chat/completions", json=body, headers=HEADERS) as reply:
                assert reply.status_code == 200
                self.resume_url = reply.headers["x-sluice-stream-url"]
                await self.read(reply)
        except httpx.TransportError:
            pass  # the API process died under it
        finally:
            self.started.set()  # a stream that ended before any content still counts as begun

    async def second_leg(self, http: httpx.AsyncClient, base_url: str) -> None:
        if self.events and self.events[-1][1] == "[DONE]":
            return  # finished before the crash
        headers = dict(HEADERS)
        if self.events:
            headers["last-event-id"] = self.events[-1][0]
        async with http.stream("GET", f"{base_url}{self.resume_url}", headers=headers) as reply:
            assert reply.status_code == 200, await reply.aread()
            await self.read(reply)

    def text(self) -> str:
        text = ""
        for _, data in self.events:
            if data != "[DONE]":
                for choice in json.loads(data).get("choices", []):
                    text += choice["delta"].get("content") or ""
        return text


def start_second_api(system: SluiceSystem) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "shared.cli", "api", "--config", str(system.config_path),
                                "--port", str(port)], cwd=ROOT, env=system.env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base_url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            return httpx.get(f"{base_url}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    wait_until(up, timeout=30, what="the second API process")
    return process, base_url


def test_100_streams_survive_their_api_process_being_killed(make_system: Any) -> None:
    accounts = [{"name": "solo", "limits": {"concurrency": STREAMS}}]
    models = [{"name": "m", "route": [{"account": "solo", "model": "x"}]}]
    system: SluiceSystem = make_system(accounts=accounts, models=models,
                                       mock_args=["--tokens-per-second", "10", "--output-tokens", "40"])
    direct = httpx.post(f"{system.mock_url}/v1/chat/completions", timeout=30,
                        json={"model": "x", "messages": MESSAGES}).json()
    want = direct["choices"][0]["message"]["content"]
    second, second_url = start_second_api(system)
    try:
        clients = asyncio.run(_run(system, second_url))
    finally:
        second.terminate()
        second.wait(10)
    crashed = [c for c in clients if not (c.events and c.events[-1][1] == "[DONE]" and c.resume_url)]
    assert not crashed, f"{len(crashed)} streams did not finish"
    for c in clients:
        ids = [i for i, _ in c.events]
        assert len(ids) == len(set(ids)), "an event was delivered twice"
        assert c.text() == want


async def _run(system: SluiceSystem, second_url: str) -> list[Client]:
    clients = [Client() for _ in range(STREAMS)]
    limits = httpx.Limits(max_connections=2 * STREAMS)
    async with httpx.AsyncClient(timeout=60, limits=limits) as http:
        first = [asyncio.create_task(c.first_leg(http, system.base_url)) for c in clients]
        await asyncio.wait_for(asyncio.gather(*(c.started.wait() for c in clients)), 60)
        # every client has its first events (~4 s of text left each): the API process dies now
        mid_stream = sum(1 for c in clients if c.events and c.events[-1][1] != "[DONE]")
        system.api.send_signal(signal.SIGKILL)
        system.api.wait(10)
        await asyncio.gather(*first)
        assert mid_stream >= STREAMS // 2, f"only {mid_stream} streams were open at the crash"
        await asyncio.gather(*(c.second_leg(http, second_url) for c in clients))
    return clients
