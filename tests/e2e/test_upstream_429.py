"""The upstream-429 path end to end, with real processes: mock provider, worker, API.

The account's configured limit (600 rpm) is far above what the provider really allows (the mock
enforces 30 rpm over a 2-second bucket, i.e. a burst of 2), and the test spends that burst on
direct calls first, so the provider refuses the first requests Sluice sends; the mock answers
after 400 ms, so several are sent before a success lets the worker learn the provider's stated
limit from its headers. A 429 must never reach a client: the worker blocks the account for the
provider's retry-after, puts the job back in its place in the queue, and runs it again later.
"""

from __future__ import annotations

import concurrent.futures
import json
import subprocess
import sys
import threading
from typing import Any

import openai
import pytest

from tests.conftest import CLIENT_KEY, ROOT, SluiceSystem

ACCOUNT = "tight"
REQUESTS = 12


def status_blocked_for(system: SluiceSystem) -> float:
    """`sluice status --json`, as an operator would run it: the account's blocked_for_s."""
    done = subprocess.run(
        [sys.executable, "-m", "shared.cli", "status", "--config", str(system.config_path), "--json"],
        cwd=ROOT, env=system.env, capture_output=True, timeout=60, check=True)
    [account] = [a for a in json.loads(done.stdout)["accounts"] if a["account"] == ACCOUNT]
    return float(account["blocked_for_s"])


@pytest.mark.slow
def test_provider_429s_are_absorbed_not_passed_on(make_system: Any) -> None:
    accounts = [{"name": ACCOUNT, "limits": {"rpm": 600, "concurrency": 16}}]
    models = [{"name": "test-model", "route": [{"account": ACCOUNT, "model": "mock-small"}]}]
    system: SluiceSystem = make_system(accounts=accounts, models=models,
                                       mock_args=["--rpm", "30", "--latency-ms", "400"])
    system.mock_config(bucket_seconds=2)  # a burst of max(2, 30 x 2 / 60) = 2 requests
    api = openai.OpenAI(base_url=f"{system.base_url}/v1", api_key=CLIENT_KEY, max_retries=0,
                        default_headers={"x-sluice-max-wait": "120"})
    direct = openai.OpenAI(base_url=f"{system.mock_url}/v1", api_key="x", max_retries=0)
    for _ in range(2):  # empty the provider's bucket: it refills one request per 2 s
        direct.chat.completions.create(model="mock-small", messages=[{"role": "user", "content": "drain"}])
    before = system.mock_stats()

    def ask(n: int) -> str:
        # a different max_tokens per request: an answer delivered to the wrong client shows
        reply = api.chat.completions.create(model="test-model", max_tokens=3 + n,
                                            messages=[{"role": "user", "content": f"request {n}"}])
        return reply.choices[0].message.content or ""

    # Operators watch `sluice status` while this runs; record what it says about the block.
    seen_blocked: list[float] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            seen_blocked.append(status_blocked_for(system))

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        with concurrent.futures.ThreadPoolExecutor(REQUESTS) as pool:
            futures = [pool.submit(ask, n) for n in range(REQUESTS)]
            outcomes: list[str | BaseException] = []
            for future in futures:
                try:
                    outcomes.append(future.result(timeout=180))
                except Exception as exc:  # every failure is reported below
                    outcomes.append(exc)
    finally:
        stop.set()
        watcher.join(90)

    errors = [o for o in outcomes if isinstance(o, BaseException)]
    assert not errors, f"a client saw an error: {errors!r}"  # in particular no 429
    stats = system.mock_stats()
    refused = stats["responses_429"] - before["responses_429"]
    assert refused > 0, "the provider never said no: the test proves nothing"
    assert stats["by_status"]["200"] - before["by_status"]["200"] == REQUESTS, "a request ran twice"
    assert system.counter(ACCOUNT, "upstream_429") == refused
    assert system.counter(ACCOUNT, "completed") == REQUESTS

    # Every 429 blocked the account; by now the last block is over.
    blocked_until = float(system.redis.hget(f"{system.prefix}:{{{ACCOUNT}}}:rl", "blocked") or 0)  # type: ignore[arg-type]
    sec, usec = system.redis.time()  # type: ignore[misc]
    assert 0 < blocked_until <= sec * 1000 + usec / 1000
    assert seen_blocked, "sluice status never answered"
    assert any(b > 0 for b in seen_blocked) or blocked_until > 0
    assert status_blocked_for(system) == 0

    # The answers: what the provider says to the same requests once its limit is lifted.
    system.mock_config(rpm=None)
    for n, text in enumerate(outcomes):
        expected = direct.chat.completions.create(model="mock-small", max_tokens=3 + n,
                                                  messages=[{"role": "user", "content": f"request {n}"}])
        assert text == expected.choices[0].message.content
