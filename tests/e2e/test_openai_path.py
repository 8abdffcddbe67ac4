"""The whole path for OpenAI Chat, driven by the official openai SDK as a user would:
API process -> Redis -> worker processes for two accounts -> mock provider -> back."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import CLIENT_KEY, SluiceSystem, two_account_model, wait_until

MESSAGES: list[Any] = [{"role": "user", "content": "Say hello to the queue"}]


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[SluiceSystem]:
    accounts, models = two_account_model()
    running = SluiceSystem(tmp_path_factory.mktemp("sys"), redis_url, accounts=accounts, models=models)
    yield running
    running.close()


def client(system: SluiceSystem, key: str = CLIENT_KEY) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{system.base_url}/v1", api_key=key, max_retries=0,
                         _strict_response_validation=True)


def direct_text(system: SluiceSystem, messages: list[Any], max_tokens: int | None = None) -> str:
    """What the mock answers when called directly: the reference for every relayed answer."""
    direct = openai.OpenAI(base_url=f"{system.mock_url}/v1", api_key="x", max_retries=0)
    reply = direct.chat.completions.create(model="mock-small", messages=messages, max_tokens=max_tokens)
    return reply.choices[0].message.content or ""


def test_non_streaming_completion_with_usage(system: SluiceSystem) -> None:
    reply = client(system).chat.completions.create(model="test-model", messages=MESSAGES)
    assert reply.choices[0].message.content == direct_text(system, MESSAGES)
    assert reply.choices[0].finish_reason == "stop"
    assert reply.model == "test-model"
    assert reply.usage is not None and reply.usage.completion_tokens > 0 and reply.usage.prompt_tokens > 0


def test_streaming_completion_with_usage(system: SluiceSystem) -> None:
    stream = client(system).chat.completions.create(
        model="test-model", messages=MESSAGES, stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == direct_text(system, MESSAGES)
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["stop"]
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == len(text.split())


def test_requests_spread_over_both_accounts(system: SluiceSystem) -> None:
    api = client(system)
    before = system.counter("acct-a", "completed"), system.counter("acct-b", "completed")
    for _ in range(12):
        api.chat.completions.create(model="test-model", messages=MESSAGES, max_tokens=4)
    # the ack may land just after the answer (on a Cluster it goes to another node in parallel)
    wait_until(lambda: system.counter("acct-a", "completed") + system.counter("acct-b", "completed")
               - sum(before) >= 12, what="12 acknowledged jobs")
    a = system.counter("acct-a", "completed") - before[0]
    b = system.counter("acct-b", "completed") - before[1]
    assert a + b == 12
    assert a >= 3 and b >= 3


def test_wrong_key_is_401_in_openai_format(system: SluiceSystem) -> None:
    with pytest.raises(openai.AuthenticationError) as info:
        client(system, key="sk-wrong").chat.completions.create(model="test-model", messages=MESSAGES)
    assert info.value.status_code == 401
    assert "sk-wrong" not in str(info.value.body)


def test_unknown_model_is_404(system: SluiceSystem) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        client(system).chat.completions.create(model="no-such-model", messages=MESSAGES)
    body: Any = info.value.body
    assert body["param"] == "model" and "no-such-model" in body["message"]


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        (b"{not json", None),
        (b'{"model": "test-model"}', "messages"),
        (b'{"model": "test-model", "messages": [{"role": "wizard", "content": "x"}]}', "messages[0]"),
        (b'{"model": "test-model", "messages": [{"role": "user", "content": "x"}], "temperature": 9}',
         "temperature"),
        (b'{"model": "test-model", "messages": [{"role": "user", "content": 5}]}', "messages[0].content"),
    ],
)
def test_malformed_body_is_400_naming_the_field(system: SluiceSystem, payload: bytes, field: str | None) -> None:
    reply = httpx.post(f"{system.base_url}/v1/chat/completions", content=payload,
                       headers={"authorization": f"Bearer {CLIENT_KEY}", "content-type": "application/json"})
    assert reply.status_code == 400
    error = reply.json()["error"]
    assert error["type"] == "invalid_request_error"
    if field is not None:
        assert field in (error["param"] or "") or field in error["message"]


def _read_events(response: httpx.Response, limit: int | None) -> list[tuple[str, str]]:
    """(id, data) of each SSE event, stopping after `limit` content events."""
    events: list[tuple[str, str]] = []
    event_id = ""
    for line in response.iter_lines():
        if line.startswith("id: "):
            event_id = line[4:]
        elif line.startswith("data: "):
            events.append((event_id, line[6:]))
            if limit is not None and len(events) >= limit:
                break
    return events


def _text_of(events: list[tuple[str, str]]) -> str:
    import json

    text = ""
    for _, data in events:
        if data != "[DONE]":
            for choice in json.loads(data).get("choices", []):
                text += choice["delta"].get("content") or ""
    return text


@pytest.mark.parametrize("how", ["get-resume-url", "repeat-post"])
def test_dropped_stream_resumes_with_last_event_id(make_system: Any, how: str) -> None:
    accounts, models = two_account_model()
    system: SluiceSystem = make_system(accounts=accounts, models=models,
                                       mock_args=["--tokens-per-second", "40", "--output-tokens", "40"])
    headers = {"authorization": f"Bearer {CLIENT_KEY}"}
    body = {"model": "test-model", "messages": MESSAGES, "stream": True}
    with httpx.stream("POST", f"{system.base_url}/v1/chat/completions", json=body, headers=headers) as first:
        resume_url = first.headers["x-sluice-stream-url"]
        head = _read_events(first, limit=5)  # then the connection drops mid-stream
    last_id = head[-1][0]
    resume_headers = {**headers, "last-event-id": last_id}
    if how == "get-resume-url":
        with httpx.stream("GET", f"{system.base_url}{resume_url}", headers=resume_headers) as second:
            tail = _read_events(second, limit=None)
    else:
        with httpx.stream("POST", f"{system.base_url}/v1/chat/completions", json=body,
                          headers=resume_headers) as second:
            tail = _read_events(second, limit=None)
    ids = [i for i, _ in head + tail]
    assert len(ids) == len(set(ids)), "an event was delivered twice"
    assert tail[-1][1] == "[DONE]"
    assert _text_of(head + tail) == direct_text(system, MESSAGES)


def test_resume_of_unknown_stream_is_404(system: SluiceSystem) -> None:
    reply = httpx.get(f"{system.base_url}/v1/streams/abc123",
                      headers={"authorization": f"Bearer {CLIENT_KEY}", "last-event-id": "abc123.1.0"})
    assert reply.status_code == 404


@pytest.mark.parametrize("stream", [False, True])
def test_worker_killed_mid_job_loses_nothing(make_system: Any, stream: bool) -> None:
    accounts = [{"name": "solo", "limits": {"concurrency": 4}}]
    models = [{"name": "test-model", "route": [{"account": "solo", "model": "mock-small"}]}]
    system: SluiceSystem = make_system(accounts=accounts, models=models, queue={"lease_seconds": 1.5},
                                       mock_args=["--latency-ms", "1500", "--tokens-per-second", "20",
                                                  "--output-tokens", "30"])
    expected = direct_text(system, MESSAGES)
    api = client(system)
    import concurrent.futures

    def call() -> str:
        if not stream:
            reply = api.chat.completions.create(model="test-model", messages=MESSAGES)
            return reply.choices[0].message.content or ""
        chunks = api.chat.completions.create(model="test-model", messages=MESSAGES, stream=True)
        return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)

    before = system.mock_stats()["requests"]
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        future = pool.submit(call)
        wait_until(lambda: system.mock_stats()["in_flight"] >= 1, what="the worker to be mid-job")
        system.workers["solo"][0].send_signal(signal.SIGKILL)
        system.start_worker("solo")
        assert future.result(timeout=60) == expected
    assert system.mock_stats()["requests"] - before == 2  # run once, killed, run again
    assert system.counter("solo", "reclaimed") == 1


def test_overhead_and_server_timing_headers(system: SluiceSystem) -> None:
    reply = httpx.post(f"{system.base_url}/v1/chat/completions",
                       json={"model": "test-model", "messages": MESSAGES},
                       headers={"authorization": f"Bearer {CLIENT_KEY}"})
    assert reply.status_code == 200
    overhead = float(reply.headers["x-sluice-overhead-ms"])
    timing = dict(part.strip().split(";dur=") for part in reply.headers["server-timing"].split(","))
    assert set(timing) == {"queue", "dispatch", "upstream", "relay", "total"}
    assert 0 <= overhead <= float(timing["total"])
    assert reply.headers["x-sluice-request-id"]


def test_stream_headers_tell_the_overhead_up_to_the_first_event(system: SluiceSystem) -> None:
    # A stream's headers go out with its first event: the provider's time to that event (made
    # 300 ms long here) is upstream time, not Sluice's overhead.
    system.mock_config(latency_ms=300)
    try:
        raw = client(system).chat.completions.with_raw_response.create(
            model="test-model", messages=MESSAGES, stream=True)
        text = "".join(chunk.choices[0].delta.content or "" for chunk in raw.parse() if chunk.choices)
    finally:
        system.mock_config(latency_ms=0)
    assert text == direct_text(system, MESSAGES)
    timing = {name: float(value) for name, value in
              (part.strip().split(";dur=") for part in raw.headers["server-timing"].split(","))}
    assert set(timing) == {"queue", "dispatch", "upstream", "relay", "total"}
    assert timing["upstream"] >= 300
    overhead = float(raw.headers["x-sluice-overhead-ms"])
    # Each figure is rounded to 0.01 ms on its own, so the sum may be off by up to 1.5 hundredths.
    assert 0 <= overhead <= timing["total"] - timing["upstream"] + 0.02
    assert raw.headers["x-sluice-stream-url"].endswith(raw.headers["x-sluice-request-id"])


def test_metrics_report_requests_queue_and_upstream(system: SluiceSystem) -> None:
    client(system).chat.completions.create(model="test-model", messages=MESSAGES)
    text = httpx.get(f"{system.base_url}/metrics").text
    assert 'sluice_requests_total{client="tester",model="test-model",dialect="openai_chat",status="200"}' in text
    assert 'sluice_queue_depth{account="acct-a",priority="interactive"}' in text
    assert 'sluice_upstream_responses_total{account="acct-' in text and 'status="200"}' in text
    assert "sluice_queue_wait_seconds_bucket" in text and 'sluice_client_tokens_total{client="tester"' in text
    assert CLIENT_KEY not in text


def test_bad_priority_header_is_400(system: SluiceSystem) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client(system).chat.completions.create(model="test-model", messages=MESSAGES,
                                               extra_headers={"x-sluice-priority": "urgent"})
    assert info.value.body["param"] == "x-sluice-priority"  # type: ignore[index]


def test_batch_priority_is_served(system: SluiceSystem) -> None:
    reply = client(system).chat.completions.create(model="test-model", messages=MESSAGES,
                                                   extra_headers={"x-sluice-priority": "batch"})
    assert reply.choices[0].message.content == direct_text(system, MESSAGES)


def test_httpx_transport_serves_the_same_answers(make_system: Any) -> None:
    accounts = [{"name": "via-httpx", "http_client": "httpx"}]
    models = [{"name": "test-model", "route": [{"account": "via-httpx", "model": "mock-small"}]}]
    system: SluiceSystem = make_system(accounts=accounts, models=models)
    api = client(system)
    expected = direct_text(system, MESSAGES)
    assert api.chat.completions.create(model="test-model", messages=MESSAGES).choices[0].message.content == expected
    chunks = api.chat.completions.create(model="test-model", messages=MESSAGES, stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == expected


def test_requests_survive_redis_losing_its_scripts(system: SluiceSystem) -> None:
    before = system.counter("acct-a", "completed") + system.counter("acct-b", "completed")
    system.redis.script_flush()  # as after a Redis restart or failover
    api = client(system)
    for _ in range(4):
        assert api.chat.completions.create(model="test-model", messages=MESSAGES).choices[0].message.content
    after = system.counter("acct-a", "completed") + system.counter("acct-b", "completed")
    assert after - before == 4  # every job acknowledged, none left in flight
    assert system.redis.zcard(f"{system.prefix}:{{acct-a}}:inflight") == 0
