"""Autoscaling in practice: an account's workers go from 1 to 8 replicas and back to 1 under load
(started as a scaler would, stopped with SIGTERM as Kubernetes does) and its limit stays exact:
no window of the run saw more claims than the rate allows, nothing was lost or answered twice.

The limiter is one Lua step on the account's slot whoever claims, so the replica count must not
show in the claim rate. Claims are read from the account's `claimed` counter by a sampler; the
bound between two samples t1 < t2 is rate x (t2 - t1) + the limiter's slack (at most two back to
back) + one for the sampler's own lateness.
"""

from __future__ import annotations

import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import openai

from tests.conftest import CLIENT_KEY, SluiceSystem, wait_until

RPM = 600  # 10 claims a second
REQUESTS = 140
MESSAGES: Any = [{"role": "user", "content": "count the replicas"}]


def test_scaling_an_account_from_1_to_8_workers_and_back_keeps_its_limit_exact(make_system: Any) -> None:
    accounts = [{"name": "acct", "limits": {"rpm": RPM, "concurrency": 32}}]
    models = [{"name": "m", "route": [{"account": "acct", "model": "x"}]}]
    system: SluiceSystem = make_system(accounts=accounts, models=models,
                                       queue={"drain_seconds": 10, "max_wait_seconds": 120},
                                       mock_args=["--latency-ms", "100"])
    direct = openai.OpenAI(base_url=f"{system.mock_url}/v1", api_key="x", max_retries=0)
    want = direct.chat.completions.create(model="x", messages=MESSAGES).choices[0].message.content
    mock_before = int(system.mock_stats()["requests"])
    client = openai.OpenAI(base_url=f"{system.base_url}/v1", api_key=CLIENT_KEY, max_retries=0, timeout=120)
    samples: list[tuple[float, int]] = []
    done = threading.Event()

    def sampler() -> None:
        while not done.is_set():
            samples.append((time.monotonic(), system.counter("acct", "claimed")))
            done.wait(0.1)  # the sampling period

    def scaler() -> list[int]:
        """Up to 8 replicas, one every 0.5 s, then SIGTERM them back down to 1; the live counts."""
        counts = []
        extra = []
        for _ in range(7):
            extra.append(system.start_worker("acct"))
            counts.append(1 + len(extra))
            done.wait(0.5)  # the scaler's step
        for proc in extra:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
            counts.append(len([p for p in system.workers["acct"] if p.poll() is None]))
        return counts

    def ask(_: int) -> str:
        reply = client.chat.completions.create(model="m", messages=MESSAGES)
        return reply.choices[0].message.content or ""

    watch = threading.Thread(target=sampler, daemon=True)
    watch.start()
    with ThreadPoolExecutor(1) as scaling, ThreadPoolExecutor(24) as pool:
        scaled = scaling.submit(scaler)
        answers = list(pool.map(ask, range(REQUESTS)))
        counts = scaled.result(timeout=120)
    done.set()
    watch.join()

    assert max(counts) == 8 and counts[-1] == 1, counts
    assert answers == [want] * REQUESTS
    wait_until(lambda: int(system.mock_stats()["requests"]) - mock_before == REQUESTS, timeout=10,
               what="the mock's count")  # every request reached the provider once
    assert system.counter("acct", "claimed") == REQUESTS  # and was claimed once: no loss, no re-run
    worst = 0.0
    for i, (t1, c1) in enumerate(samples):
        for t2, c2 in samples[i + 1:]:
            allowed = RPM / 60 * (t2 - t1) + 3
            worst = max(worst, (c2 - c1) - allowed)
    assert worst <= 0, f"a window saw {worst:.1f} claims more than the limit allows"
    first = next(t for t, c in samples if c > 0)
    last = next(t for t, c in samples if c == REQUESTS)
    print(f"\n{REQUESTS} requests at {RPM} rpm, replicas {counts}: used "
          f"{(REQUESTS - 1) / (last - first) / (RPM / 60):.0%} of the limit over {last - first:.1f} s")
