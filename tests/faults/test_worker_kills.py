"""Requests (half streaming) while workers are SIGKILLed at random and replaced: every one is
answered with its complete content, none twice. The CI run sends 200; the slow one 1,000
(docs/reliability.md)."""

from __future__ import annotations

import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import openai
import pytest

from tests.conftest import CLIENT_KEY, SluiceSystem

MESSAGES: Any = [{"role": "user", "content": "a story about queues"}]
ACCOUNTS = ("acct-a", "acct-b")


def run_with_kills(make_system: Any, requests: int, seed: int) -> dict[str, Any]:
    accounts = [{"name": n, "limits": {"concurrency": 16}} for n in ACCOUNTS]
    models = [{"name": "m", "route": [{"account": n, "model": "x"} for n in ACCOUNTS]}]
    # lease 2 s: a killed worker's jobs come back within ~2 s; 10 attempts: a job may be unlucky
    system: SluiceSystem = make_system(accounts=accounts, models=models, replicas=2,
                                       queue={"lease_seconds": 2, "max_attempts": 10, "max_wait_seconds": 120},
                                       mock_args=["--tokens-per-second", "60", "--output-tokens", "24"])
    direct = openai.OpenAI(base_url=f"{system.mock_url}/v1", api_key="x", max_retries=0)
    want = direct.chat.completions.create(model="x", messages=MESSAGES).choices[0].message.content
    client = openai.OpenAI(base_url=f"{system.base_url}/v1", api_key=CLIENT_KEY, max_retries=0, timeout=120)
    rng = random.Random(seed)
    done = threading.Event()
    kills = 0

    def killer() -> None:
        nonlocal kills
        while not done.wait(rng.uniform(0.3, 0.9)):  # the fault schedule: a kill every 0.3-0.9 s
            live = [c for c in system.system.of_role("worker") if c.alive()]
            victim = rng.choice(live)
            victim.process.kill()
            victim.process.wait()
            kills += 1
            system.system.start_worker(victim.label.split("-", 1)[1].rsplit("-", 1)[0])

    def one(i: int) -> str | None:
        try:
            if i % 2:
                return client.chat.completions.create(model="m", messages=MESSAGES).choices[0].message.content
            chunks = client.chat.completions.create(model="m", messages=MESSAGES, stream=True)
            return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        except openai.APIError as err:
            return f"error: {err}"

    started = time.monotonic()
    chaos = threading.Thread(target=killer, daemon=True)
    chaos.start()
    try:
        with ThreadPoolExecutor(64) as pool:
            results = list(pool.map(one, range(requests)))
    finally:
        done.set()
        chaos.join(10)
    elapsed = time.monotonic() - started
    wrong = [r for r in results if r != want]
    assert not wrong, f"{len(wrong)} of {requests} not answered in full exactly once, e.g. {wrong[:3]}"
    reclaimed = sum(system.counter(a, "reclaimed") for a in ACCOUNTS)
    print(f"\n{requests} requests, {kills} worker SIGKILLs, {reclaimed} jobs re-run, {elapsed:.1f} s: "
          f"all answered in full, none twice")
    return {"kills": kills, "reclaimed": reclaimed, "elapsed": elapsed}


def test_200_requests_while_workers_are_killed_at_random(make_system: Any) -> None:
    figures = run_with_kills(make_system, 200, seed=7)
    assert figures["kills"] >= 3, "the run must actually have killed workers"


@pytest.mark.slow
def test_1000_requests_while_workers_are_killed_at_random(make_system: Any) -> None:
    figures = run_with_kills(make_system, 1000, seed=13)
    assert figures["kills"] >= 10
