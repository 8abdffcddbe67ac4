"""A client that hangs up, end to end: the mock provider must never see a cancelled queued job,
and must see an in-flight call closed before it finished. Streams first get a grace period in
which a reconnect with Last-Event-ID resumes them (stream_cancel_grace_seconds).

The mock counts answers whose client hung up early (`closed_early` in `GET /_stats`); the
account's counters say what Sluice did (cancelled = withdrawn from the queue, aborted = cut off
mid-call).
"""

from __future__ import annotations

import concurrent.futures
import json
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import CLIENT_KEY, SluiceSystem, wait_until

ACCOUNT = "solo"
GRACE = 2.0
MESSAGES: list[Any] = [{"role": "user", "content": "Hang up on me"}]
HEADERS = {"authorization": f"Bearer {CLIENT_KEY}"}


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[SluiceSystem]:
    accounts = [{"name": ACCOUNT, "provider": "mock", "limits": {"concurrency": 1}}]
    models = [{"name": "test-model", "route": [{"account": ACCOUNT, "model": "mock-small"}]}]
    running = SluiceSystem(tmp_path_factory.mktemp("sys"), redis_url, accounts=accounts, models=models,
                           queue={"stream_cancel_grace_seconds": GRACE, "cancel_poll_seconds": 0.2})
    yield running
    running.close()


def stats(system: SluiceSystem) -> dict[str, Any]:
    return system.mock_stats()


def body(stream: bool, max_tokens: int = 100) -> dict[str, Any]:
    return {"model": "test-model", "messages": MESSAGES, "stream": stream, "max_tokens": max_tokens}


def first_event_then_hang_up(system: SluiceSystem) -> str:
    """Opens a stream, reads its first content frame, and closes the connection; the frame's id."""
    with httpx.stream("POST", f"{system.base_url}/v1/chat/completions", headers=HEADERS, json=body(True),
                      timeout=30) as reply:
        assert reply.status_code == 200
        event_id = ""
        for line in reply.iter_lines():
            if line.startswith("id: "):
                event_id = line[4:]
            if line.startswith("data: ") and '"content":"' in line:
                return event_id
    raise AssertionError("the stream ended before its first content")


def test_a_stream_left_while_queued_never_reaches_the_provider(system: SluiceSystem) -> None:
    system.mock_config(latency_ms=(GRACE + 2.5) * 1000, tokens_per_second=0)  # holds the only slot past the grace
    before = stats(system)
    cancelled = system.counter(ACCOUNT, "cancelled")
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        blocker = pool.submit(httpx.post, f"{system.base_url}/v1/chat/completions", headers=HEADERS,
                              json=body(False), timeout=30)
        wait_until(lambda: stats(system)["in_flight"] >= 1, what="the only slot to be busy")
        # Queued behind it: no status line yet, and the client leaves.
        with pytest.raises(httpx.ReadTimeout), httpx.stream(
                "POST", f"{system.base_url}/v1/chat/completions", headers=HEADERS, json=body(True),
                timeout=httpx.Timeout(30, read=0.5)) as reply:
            reply.read()
        wait_until(lambda: system.counter(ACCOUNT, "cancelled") == cancelled + 1, timeout=GRACE + 10,
                   what="the queued stream to be withdrawn after the grace period")
        assert blocker.result().status_code == 200
    system.mock_config(latency_ms=0)
    ready = f"{system.prefix}:{{{ACCOUNT}}}:ready"
    assert system.redis.zcard(ready) == 0
    assert stats(system)["requests"] - before["requests"] == 1  # only the blocker ever reached it


def test_a_stream_left_mid_call_is_closed_at_the_provider(system: SluiceSystem) -> None:
    system.mock_config(latency_ms=0, tokens_per_second=10, output_tokens=100)  # 10 s if left to run
    before = stats(system)
    aborted = system.counter(ACCOUNT, "aborted")
    event_id = first_event_then_hang_up(system)
    wait_until(lambda: stats(system)["closed_early"] == before["closed_early"] + 1, timeout=GRACE + 5,
               what="the mock to see its connection closed")
    wait_until(lambda: system.counter(ACCOUNT, "aborted") == aborted + 1, what="the job to be acknowledged")
    after = stats(system)
    assert after["requests"] - before["requests"] == 1
    assert after["in_flight"] == 0
    # Its reservation (prompt + 100 output tokens) was reconciled with the few tokens it streamed.
    used = system.counter(ACCOUNT, "tokens_out:mock-small")
    assert 0 < used < 100
    # A reconnect after the grace period is told the stream was cancelled, in its protocol.
    resumed = httpx.post(f"{system.base_url}/v1/chat/completions", json=body(True), timeout=10,
                         headers={**HEADERS, "last-event-id": event_id})
    errors = [json.loads(line[6:]) for line in resumed.text.splitlines()
              if line.startswith("data: {") and '"error"' in line]
    assert errors and "cancelled" in errors[0]["error"]["message"]


def test_a_reconnect_within_the_grace_period_resumes_and_cancels_nothing(system: SluiceSystem) -> None:
    system.mock_config(latency_ms=0, tokens_per_second=20, output_tokens=30)  # 1.5 s
    before = stats(system)
    aborted = system.counter(ACCOUNT, "aborted")
    event_id = first_event_then_hang_up(system)
    resumed = httpx.post(f"{system.base_url}/v1/chat/completions", json=body(True), timeout=30,
                         headers={**HEADERS, "last-event-id": event_id})
    assert resumed.status_code == 200
    assert "data: [DONE]" in resumed.text and '"error"' not in resumed.text
    assert stats(system)["closed_early"] == before["closed_early"]
    assert system.counter(ACCOUNT, "aborted") == aborted
    # Nothing is left to cancel it later: the pending cancel was called off.
    assert system.redis.zcard(f"{system.prefix}:cancels") == 0


def test_a_whole_answer_left_mid_call_is_closed_at_the_provider(system: SluiceSystem) -> None:
    system.mock_config(latency_ms=6000, tokens_per_second=0)
    before = stats(system)
    aborted = system.counter(ACCOUNT, "aborted")
    api = openai.OpenAI(base_url=f"{system.base_url}/v1", api_key=CLIENT_KEY, max_retries=0, timeout=1.0)
    with pytest.raises(openai.APITimeoutError):
        api.chat.completions.create(model="test-model", messages=MESSAGES)
    wait_until(lambda: stats(system)["closed_early"] == before["closed_early"] + 1, timeout=4,
               what="the mock to see the call closed before its 6 s latency was over")
    wait_until(lambda: system.counter(ACCOUNT, "aborted") == aborted + 1, what="the job to be acknowledged")
    system.mock_config(latency_ms=0)
