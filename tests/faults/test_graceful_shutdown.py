"""SIGTERM, as Kubernetes sends it: a worker stops claiming and drains (finishing its jobs, or
handing them back after `queue.drain_seconds`), an API process stops accepting and lets open
streams finish. Real processes, real signals."""

from __future__ import annotations

import itertools
import json
import signal
import socket
import subprocess
import sys
import threading
from typing import Any

import httpx
import openai

from shared.redis.embedded import free_port
from tests.conftest import CLIENT_KEY, SluiceSystem, wait_until

MESSAGES: Any = [{"role": "user", "content": "tell me a story"}]


def streamer(system: SluiceSystem, out: list[str], first: threading.Event | None = None) -> threading.Thread:
    def run() -> None:
        client = openai.OpenAI(base_url=f"{system.base_url}/v1", api_key=CLIENT_KEY, max_retries=0, timeout=90)
        text = ""
        for chunk in client.chat.completions.create(model="m", messages=MESSAGES, stream=True):
            if chunk.choices and chunk.choices[0].delta.content:
                text += chunk.choices[0].delta.content
                if first is not None:
                    first.set()
        out.append(text)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def expected_text(system: SluiceSystem) -> str:
    direct = openai.OpenAI(base_url=f"{system.mock_url}/v1", api_key="x", max_retries=0)
    return direct.chat.completions.create(model="x", messages=MESSAGES).choices[0].message.content or ""


def one_account(make_system: Any, queue: dict[str, Any], tokens_per_second: int, tokens: int) -> SluiceSystem:
    accounts = [{"name": "solo", "limits": {"concurrency": 8}}]
    models = [{"name": "m", "route": [{"account": "solo", "model": "x"}]}]
    return make_system(accounts=accounts, models=models, queue=queue,  # type: ignore[no-any-return]
                       mock_args=["--tokens-per-second", str(tokens_per_second), "--output-tokens", str(tokens)])


def test_sigterm_on_a_worker_stops_claiming_and_finishes_its_jobs(make_system: Any) -> None:
    system = one_account(make_system, {"drain_seconds": 30}, tokens_per_second=8, tokens=16)  # ~2 s a stream
    want = expected_text(system)
    texts: list[str] = []
    threads = [streamer(system, texts) for _ in range(3)]
    wait_until(lambda: system.counter("solo", "claimed") == 3, what="three jobs in flight")
    worker = system.workers["solo"][0]
    worker.send_signal(signal.SIGTERM)
    late: list[str] = []
    late_thread = streamer(system, late)  # arrives while the worker drains: it must not take it
    worker.wait(20)
    assert worker.returncode == 0
    for t in threads:
        t.join(30)
    assert texts == [want] * 3  # all three finished during the drain, complete
    assert system.counter("solo", "claimed") == 3 and late == []
    system.start_worker("solo")  # the replacement serves what arrived meanwhile
    late_thread.join(30)
    assert late == [want]


def test_a_worker_past_its_drain_timeout_hands_jobs_back_to_be_resumed(make_system: Any) -> None:
    system = one_account(make_system, {"drain_seconds": 1}, tokens_per_second=6, tokens=30)  # ~5 s a stream
    want = expected_text(system)
    texts: list[str] = []
    first = threading.Event()
    threads = [streamer(system, texts, first) for _ in range(2)]
    assert first.wait(20)
    wait_until(lambda: system.counter("solo", "claimed") == 2, what="both jobs in flight")
    worker = system.workers["solo"][0]
    worker.send_signal(signal.SIGTERM)
    worker.wait(15)
    assert worker.returncode == 0
    assert system.counter("solo", "handed_back") == 2
    assert system.counter("solo", "completed") == 0
    system.start_worker("solo")  # picks them up at once (no lease to wait out) and resumes each
    for t in threads:
        t.join(60)
    assert texts == [want] * 2, "a resumed stream must be complete, with nothing repeated"


def test_sigterm_on_the_api_stops_accepting_and_lets_open_streams_finish(make_system: Any) -> None:
    system = one_account(make_system, {"drain_seconds": 30}, tokens_per_second=6, tokens=18)  # ~3 s a stream
    want = expected_text(system)
    texts: list[str] = []
    first = threading.Event()
    thread = streamer(system, texts, first)
    assert first.wait(20)
    api = system.system.of_role("api")[0].process
    api.send_signal(signal.SIGTERM)

    def refused() -> bool:
        try:
            socket.create_connection(("127.0.0.1", system.system.api_port), timeout=0.5).close()
            return False
        except OSError:
            return True

    wait_until(refused, timeout=5, what="the API to stop accepting")
    thread.join(30)
    assert texts == [want]
    api.wait(20)
    assert api.returncode in (0, -signal.SIGTERM)  # uvicorn re-raises the signal once it has drained


def read_sse(lines: Any, seen: dict[str, Any]) -> None:
    """Collects the OpenAI Chat SSE content and the last event id, until the stream ends or breaks."""
    try:
        for line in lines:
            if line.startswith("id:"):
                seen["id"] = line[3:].strip()
            elif line.startswith("data:") and line[5:].strip() != "[DONE]":
                chunk = json.loads(line[5:])
                if chunk.get("choices"):
                    seen["text"] += chunk["choices"][0]["delta"].get("content") or ""
            elif line.startswith("data:"):
                seen["done"] = True
    except httpx.HTTPError:
        seen["cut"] = True


def test_a_stream_cut_by_the_api_drain_limit_resumes_on_another_api_process(make_system: Any) -> None:
    system = one_account(make_system, {"drain_seconds": 1}, tokens_per_second=5, tokens=25)  # ~5 s a stream
    want = expected_text(system)
    seen: dict[str, Any] = {"text": "", "id": None, "done": False, "cut": False}
    headers = {"authorization": f"Bearer {CLIENT_KEY}"}
    body = {"model": "m", "messages": MESSAGES, "stream": True}
    with httpx.stream("POST", f"{system.base_url}/v1/chat/completions", json=body, headers=headers,
                      timeout=30) as reply:
        resume_path = reply.headers["x-sluice-stream-url"]
        lines = reply.iter_lines()
        while not seen["text"]:
            read_sse(itertools.islice(lines, 1), seen)
        api = system.system.of_role("api")[0].process
        api.send_signal(signal.SIGTERM)  # drains for 1 s, then cuts the stream
        read_sse(lines, seen)
    assert not seen["done"] and seen["id"], "the stream should have been cut by the drain limit"
    api.wait(20)
    port = free_port()
    other = subprocess.Popen([sys.executable, "-m", "shared.cli", "api", "--port", str(port), "--config",
                              str(system.config_path), "--redis-url", system.redis_url], env=system.env,
                             start_new_session=True)
    try:
        wait_until(lambda: answers(port), timeout=30, what="the other API process")
        with httpx.stream("GET", f"http://127.0.0.1:{port}{resume_path}", timeout=30,
                          headers={**headers, "last-event-id": seen["id"]}) as resumed:
            assert resumed.status_code == 200
            read_sse(resumed.iter_lines(), seen)
    finally:
        other.terminate()
        other.wait(20)
    assert seen["done"] and seen["text"] == want, "resumed after the last event id: complete, nothing twice"


def answers(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False
