"""Idempotency-Key end to end: API process, worker, Redis and the mock provider, driven by the SDKs.

The mock's request counter (`GET /_stats`) is the proof of "one upstream call": each test reads it
before and after. Answers are compared whole (ids included), so a second run would show even
though the mock is deterministic.
"""

from __future__ import annotations

import concurrent.futures
import subprocess
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import openai
import pytest

from shared.redis.embedded import free_port
from tests.conftest import CLIENT_KEY, OTHER_CLIENT_KEY, ROOT, SluiceSystem, wait_until

MESSAGES: list[Any] = [{"role": "user", "content": "Remember this once"}]


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[SluiceSystem]:
    accounts = [{"name": "solo", "provider": "mock", "limits": {"concurrency": 8}}]
    models = [{"name": "test-model", "route": [{"account": "solo", "model": "mock-small"}]}]
    running = SluiceSystem(tmp_path_factory.mktemp("sys"), redis_url, accounts=accounts, models=models)
    yield running
    running.close()


def client(system: SluiceSystem, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{system.base_url}/v1", api_key=CLIENT_KEY, max_retries=0,
                         default_headers={"Idempotency-Key": key})


def upstream_calls(system: SluiceSystem) -> int:
    return int(system.mock_stats()["requests"])


def test_retries_in_sequence_and_concurrently_make_one_upstream_call(system: SluiceSystem) -> None:
    system.mock_config(latency_ms=400, tokens_per_second=0)
    api = client(system, f"seq-{uuid.uuid4().hex}")
    before = upstream_calls(system)

    def ask() -> openai.types.chat.ChatCompletion:
        return api.chat.completions.create(model="test-model", messages=MESSAGES, max_tokens=7)

    with concurrent.futures.ThreadPoolExecutor(4) as pool:  # four at once: one runs, three join it
        replies = list(pool.map(lambda _: ask(), range(4)))
    replies.append(ask())  # and once more after it finished: replayed from its record
    assert upstream_calls(system) - before == 1
    first = replies[0]
    assert first.choices[0].message.content
    for reply in replies[1:]:
        assert reply.id == first.id
        assert reply.choices[0].message.content == first.choices[0].message.content
        assert reply.usage == first.usage
    # Without the key, the same request is a new call.
    openai.OpenAI(base_url=f"{system.base_url}/v1", api_key=CLIENT_KEY, max_retries=0).chat.completions.create(
        model="test-model", messages=MESSAGES, max_tokens=7)
    assert upstream_calls(system) - before == 2


def test_a_key_belongs_to_its_client_key_not_to_everyone(system: SluiceSystem) -> None:
    """Two tenants that happen to pick the same Idempotency-Key get two calls and two answers:
    neither can read the other's record through it."""
    key = f"shared-{uuid.uuid4().hex}"
    before = upstream_calls(system)
    mine = client(system, key).chat.completions.create(model="test-model", messages=MESSAGES, max_tokens=7)
    theirs = openai.OpenAI(base_url=f"{system.base_url}/v1", api_key=OTHER_CLIENT_KEY, max_retries=0,
                           default_headers={"Idempotency-Key": key}).chat.completions.create(
        model="test-model", messages=[{"role": "user", "content": "Something else entirely"}], max_tokens=7)
    assert upstream_calls(system) - before == 2
    assert theirs.id != mine.id


def test_streams_are_replayed_frame_for_frame(system: SluiceSystem) -> None:
    system.mock_config(latency_ms=0, tokens_per_second=40)
    key = f"stream-{uuid.uuid4().hex}"
    before = upstream_calls(system)

    def stream_raw() -> bytes:
        with httpx.stream("POST", f"{system.base_url}/v1/chat/completions", timeout=30,
                          headers={"authorization": f"Bearer {CLIENT_KEY}", "idempotency-key": key},
                          json={"model": "test-model", "messages": MESSAGES, "stream": True,
                                "max_tokens": 10}) as reply:
            assert reply.status_code == 200
            return reply.read()

    with concurrent.futures.ThreadPoolExecutor(2) as pool:  # the second joins the running stream
        bodies = list(pool.map(lambda _: stream_raw(), range(2)))
    bodies.append(stream_raw())
    assert upstream_calls(system) - before == 1
    assert b"data: [DONE]" in bodies[0]
    assert bodies[1] == bodies[0] and bodies[2] == bodies[0]


def test_same_key_with_another_body_is_a_conflict(system: SluiceSystem) -> None:
    system.mock_config(latency_ms=0, tokens_per_second=0)
    api = client(system, f"conflict-{uuid.uuid4().hex}")
    api.chat.completions.create(model="test-model", messages=MESSAGES)
    before = upstream_calls(system)
    with pytest.raises(openai.ConflictError) as caught:
        api.chat.completions.create(model="test-model", messages=[{"role": "user", "content": "something else"}])
    assert caught.value.status_code == 409
    assert "Idempotency-Key" in str(caught.value)
    # The same conflict in the Anthropic protocol: its own error shape.
    claude = anthropic.Anthropic(base_url=system.base_url, api_key=CLIENT_KEY, max_retries=0,
                                 default_headers={"Idempotency-Key": "shared-key"})
    claude.messages.create(model="test-model", max_tokens=5, messages=[{"role": "user", "content": "one"}])
    with pytest.raises(anthropic.ConflictError) as conflict:
        claude.messages.create(model="test-model", max_tokens=5, messages=[{"role": "user", "content": "two"}])
    assert conflict.value.body["type"] == "error"  # type: ignore[index]
    assert upstream_calls(system) - before == 1


def test_a_key_it_cannot_keep_is_refused(system: SluiceSystem) -> None:
    reply = httpx.post(f"{system.base_url}/v1/chat/completions", timeout=10,
                       headers={"authorization": f"Bearer {CLIENT_KEY}", "idempotency-key": "x" * 300},
                       json={"model": "test-model", "messages": MESSAGES})
    assert reply.status_code == 400
    assert reply.json()["error"]["param"] == "Idempotency-Key"


def test_a_withdrawn_first_request_releases_its_key(system: SluiceSystem) -> None:
    """A first request whose wait ran out never ran: the retry runs afresh, not a replayed 429."""
    system.mock_config(latency_ms=1500, tokens_per_second=0)
    key = f"withdrawn-{uuid.uuid4().hex}"
    headers = {"authorization": f"Bearer {CLIENT_KEY}", "idempotency-key": key}
    blockers = concurrent.futures.ThreadPoolExecutor(8)
    try:  # fill the account's 8 slots so the next request has to queue
        busy = [blockers.submit(httpx.post, f"{system.base_url}/v1/chat/completions", timeout=30,
                                headers={"authorization": f"Bearer {CLIENT_KEY}"},
                                json={"model": "test-model", "messages": MESSAGES}) for _ in range(8)]
        wait_until(lambda: system.mock_stats()["in_flight"] >= 8, what="every slot busy")
        first = httpx.post(f"{system.base_url}/v1/chat/completions", timeout=30,
                           headers={**headers, "x-sluice-max-wait": "0.2"},
                           json={"model": "test-model", "messages": MESSAGES})
        assert first.status_code == 429
        for done in busy:
            assert done.result().status_code == 200
    finally:
        blockers.shutdown()
    system.mock_config(latency_ms=0)
    again = httpx.post(f"{system.base_url}/v1/chat/completions", timeout=30, headers=headers,
                       json={"model": "test-model", "messages": MESSAGES})
    assert again.status_code == 200


def test_a_provider_fault_is_not_replayed(system: SluiceSystem) -> None:
    """A first request that failed for the provider's sake (a 503 outlasting the retries) leaves
    the key free: the client's retry runs afresh instead of getting the 503 again for a day."""
    system.mock_config(latency_ms=0, tokens_per_second=0, fail_next=100, fail_status=503)
    api = client(system, f"fault-{uuid.uuid4().hex}")
    before = upstream_calls(system)
    try:
        with pytest.raises(openai.APIStatusError) as caught:
            api.chat.completions.create(model="test-model", messages=MESSAGES)
        assert caught.value.status_code == 503
    finally:
        system.mock_config(fail_next=0)
    failed_calls = upstream_calls(system) - before
    reply = api.chat.completions.create(model="test-model", messages=MESSAGES)
    assert reply.choices[0].message.content
    assert upstream_calls(system) - before == failed_calls + 1


def test_a_retry_on_another_api_process_joins_the_first(system: SluiceSystem) -> None:
    """The first stream runs through one API process; its retry, sent to a second API process
    while it runs, follows the same record: one upstream call, the same bytes."""
    port = free_port()
    other = subprocess.Popen([sys.executable, "-m", "shared.cli", "api", "--config", str(system.config_path),
                              "--port", str(port)], cwd=ROOT, env=system.env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        def up() -> bool:
            try:
                return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(up, timeout=30, what="the second API process")
        system.mock_config(latency_ms=0, tokens_per_second=20)
        key = f"other-{uuid.uuid4().hex}"
        before = upstream_calls(system)

        def stream_raw(base_url: str) -> bytes:
            with httpx.stream("POST", f"{base_url}/v1/chat/completions", timeout=30,
                              headers={"authorization": f"Bearer {CLIENT_KEY}", "idempotency-key": key},
                              json={"model": "test-model", "messages": MESSAGES, "stream": True,
                                    "max_tokens": 12}) as reply:
                assert reply.status_code == 200
                return reply.read()

        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            first = pool.submit(stream_raw, system.base_url)
            wait_until(lambda: system.mock_stats()["in_flight"] >= 1, what="the first stream to be running")
            joined = stream_raw(f"http://127.0.0.1:{port}")
            assert joined == first.result()
        assert upstream_calls(system) - before == 1
    finally:
        other.terminate()
        other.wait(10)
