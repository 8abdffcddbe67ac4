"""Upstream faults end to end: the mock provider injects 5xx answers, timeouts, truncated and
dropped streams (`POST /_config`: fail_next, fail_status, latency_ms, truncate_after_chunks,
truncate_drop) and refuses requests; clients use the official SDKs or raw SSE.

What must hold: retryable faults are retried (the mock's request counter shows how often) and
then answered, or fail over to a fallback model, or end with an error in the client's protocol;
a 4xx from the provider fails at once; never a hang, never a 500 from Sluice itself.
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import openai
import pytest

from tests.conftest import CLIENT_KEY, SluiceSystem, wait_until

RETRIES = 3
MESSAGES: list[Any] = [{"role": "user", "content": "Fault tolerance please"}]
HEADERS = {"authorization": f"Bearer {CLIENT_KEY}"}


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[SluiceSystem]:
    accounts = [
        {"name": "primary", "timeout_seconds": 1.0, "limits": {"concurrency": 4}},
        # every call to these fails: a provider outage, and a provider refusing the request
        {"name": "down", "headers": {"x-mock-fail": "503"}},
        {"name": "picky", "headers": {"x-mock-fail": "400"}},
        {"name": "slow", "headers": {"x-mock-latency-ms": "3000"}, "limits": {"concurrency": 1}},
    ]
    models = [
        {"name": "test-model", "route": [{"account": "primary", "model": "mock-small"}]},
        {"name": "outage-model", "route": [{"account": "down", "model": "mock-small"}],
         "fallbacks": ["test-model"]},
        {"name": "picky-model", "route": [{"account": "picky", "model": "mock-small"}],
         "fallbacks": ["test-model"]},
        {"name": "busy-model", "route": [{"account": "slow", "model": "mock-small"}],
         "fallbacks": ["test-model"]},
    ]
    queue = {"upstream_retries": RETRIES, "retry_base_seconds": 0.05, "retry_max_seconds": 0.2}
    running = SluiceSystem(tmp_path_factory.mktemp("sys"), redis_url, accounts=accounts, models=models,
                           queue=queue)
    yield running
    running.close()


@pytest.fixture(autouse=True)
def healthy_mock(system: SluiceSystem) -> Iterator[None]:
    system.mock_config(fail_next=0, latency_ms=0, tokens_per_second=0, truncate_after_chunks=None,
                       truncate_drop=False, output_tokens=16)
    yield
    system.mock_config(fail_next=0, latency_ms=0, tokens_per_second=0, truncate_after_chunks=None,
                       truncate_drop=False, output_tokens=16)


def api(system: SluiceSystem) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{system.base_url}/v1", api_key=CLIENT_KEY, max_retries=0, timeout=30)


def calls(system: SluiceSystem) -> int:
    return int(system.mock_stats()["requests"])


def expected_text(system: SluiceSystem) -> str:
    direct = openai.OpenAI(base_url=f"{system.mock_url}/v1", api_key="x", max_retries=0)
    reply = direct.chat.completions.create(model="mock-small", messages=MESSAGES)
    return reply.choices[0].message.content or ""


def sse(system: SluiceSystem, model: str = "test-model") -> str:
    reply = httpx.post(f"{system.base_url}/v1/chat/completions", headers=HEADERS, timeout=30,
                       json={"model": model, "messages": MESSAGES, "stream": True})
    return f"{reply.status_code}\n{reply.text}"


@pytest.mark.parametrize("stream", [False, True])
def test_5xx_answers_are_retried_then_answered(system: SluiceSystem, stream: bool) -> None:
    expected = expected_text(system)
    system.mock_config(fail_next=2, fail_status=500)
    before = calls(system)
    if stream:
        chunks = api(system).chat.completions.create(model="test-model", messages=MESSAGES, stream=True)
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    else:
        text = api(system).chat.completions.create(model="test-model", messages=MESSAGES).choices[0].message.content
    assert text == expected
    assert calls(system) - before == 3  # two 500s, then the answer


def test_a_fault_that_outlasts_the_retries_is_a_clear_error(system: SluiceSystem) -> None:
    system.mock_config(fail_next=100, fail_status=503)
    before = calls(system)
    with pytest.raises(openai.APIStatusError) as caught:
        api(system).chat.completions.create(model="test-model", messages=MESSAGES)
    assert caught.value.status_code == 503
    assert "503" in caught.value.message
    assert calls(system) - before == 1 + RETRIES


def test_timeouts_are_retried_then_a_504(system: SluiceSystem) -> None:
    system.mock_config(latency_ms=1500)  # the account's timeout is 1 s
    before = calls(system)
    with pytest.raises(openai.APIStatusError) as caught:
        api(system).chat.completions.create(model="test-model", messages=MESSAGES)
    assert caught.value.status_code == 504
    assert calls(system) - before == 1 + RETRIES


@pytest.mark.parametrize("drop", [False, True])
def test_a_stream_broken_before_anything_reached_the_client_is_retried(system: SluiceSystem, drop: bool) -> None:
    """Status line, then nothing: an empty body (a truncated stream) or a dropped connection."""
    system.mock_config(fail_next=0, truncate_after_chunks=0, truncate_drop=drop)
    before = calls(system)
    reply = sse(system)
    assert reply.startswith("503\n")  # never started: a real HTTP error, in OpenAI's shape
    assert '"error"' in reply
    assert calls(system) - before == 1 + RETRIES


@pytest.mark.parametrize("drop", [False, True])
def test_a_stream_cut_mid_way_ends_with_an_error_event(system: SluiceSystem, drop: bool) -> None:
    system.mock_config(tokens_per_second=50, truncate_after_chunks=4, truncate_drop=drop)
    before = calls(system)
    reply = sse(system)
    status, _, body = reply.partition("\n")
    assert status == "200"
    frames = [line for line in body.splitlines() if line.startswith("data: ")]
    assert any('"content":"' in f for f in frames)  # some of the answer came through
    assert '"error"' in frames[-2] and frames[-1] == "data: [DONE]"  # then an error event ends it
    assert calls(system) - before == 1  # what reached the client cannot be taken back: not retried


def test_the_same_cut_in_anthropic_protocol(system: SluiceSystem) -> None:
    system.mock_config(tokens_per_second=50, truncate_after_chunks=4, truncate_drop=True)
    claude = anthropic.Anthropic(base_url=system.base_url, api_key=CLIENT_KEY, max_retries=0)
    # The SDK raises on an `error` event.
    with pytest.raises(anthropic.APIStatusError) as caught, claude.messages.stream(
            model="test-model", max_tokens=50, messages=MESSAGES) as events:
        for _ in events:
            pass
    assert caught.value.body is not None


def test_a_4xx_fails_fast_with_the_providers_error(system: SluiceSystem) -> None:
    before = calls(system)
    with pytest.raises(openai.BadRequestError) as caught:
        api(system).chat.completions.create(model="picky-model", messages=MESSAGES)
    assert "Mock failure requested by x-mock-fail: 400" in caught.value.message
    assert calls(system) - before == 1  # not retried, and no fallback for the request's own fault
    claude = anthropic.Anthropic(base_url=system.base_url, api_key=CLIENT_KEY, max_retries=0)
    with pytest.raises(anthropic.BadRequestError) as refused:
        claude.messages.create(model="picky-model", max_tokens=10, messages=MESSAGES)
    assert refused.value.body["type"] == "error"  # type: ignore[index]


@pytest.mark.parametrize("stream", [False, True])
def test_an_outage_falls_back_to_the_next_model(system: SluiceSystem, stream: bool) -> None:
    expected = expected_text(system)
    before = calls(system)
    if stream:
        chunks = api(system).chat.completions.create(model="outage-model", messages=MESSAGES, stream=True)
        parts = list(chunks)
        text = "".join(c.choices[0].delta.content or "" for c in parts if c.choices)
        assert all(c.model == "outage-model" for c in parts)  # still the model the client asked for
    else:
        reply = api(system).chat.completions.create(model="outage-model", messages=MESSAGES)
        text = reply.choices[0].message.content or ""
        assert reply.model == "outage-model"
    assert text == expected
    assert calls(system) - before == (1 + RETRIES) + 1  # the outage, retried; then the fallback


def test_a_model_exhausted_past_the_wait_falls_back(system: SluiceSystem) -> None:
    """The only slot of busy-model's account is taken for 3 s; a request that will wait 0.3 s is
    answered by the fallback instead of getting a 429."""
    expected = expected_text(system)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        first = pool.submit(api(system).chat.completions.create, model="busy-model", messages=MESSAGES)
        wait_until(lambda: system.mock_stats()["in_flight"] >= 1, what="the slow account's slot to be taken")
        impatient = api(system).with_options(default_headers={"x-sluice-max-wait": "0.3"})
        reply = impatient.chat.completions.create(model="busy-model", messages=MESSAGES)
        assert reply.choices[0].message.content == expected
        assert system.mock_stats()["in_flight"] >= 1  # answered while the slow call still runs
        assert first.result(timeout=30).choices[0].message.content == expected
