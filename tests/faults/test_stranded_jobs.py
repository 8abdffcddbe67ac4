"""Queued jobs are not stranded on an account that cannot serve them: a sibling's worker pulls
them over (worker/rebalance.py, shared/redis/moves.py) and serves them within their deadline;
batch lines too, each still run once and recorded done once."""

from __future__ import annotations

import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import openai

from tests.batches.helpers import chat_line, jsonl, openai_client, results, wait_for_status
from tests.conftest import CLIENT_KEY, SluiceSystem, wait_until

MESSAGES: Any = [{"role": "user", "content": "hello there"}]
MAX_WAIT = 20.0  # each request's queue deadline (x-sluice-max-wait)


def ask(system: SluiceSystem, n: int, stream_every: int = 2) -> list[str | int]:
    """n concurrent requests, every other one streaming: the text, or the HTTP status of a failure."""
    client = openai.OpenAI(base_url=f"{system.base_url}/v1", api_key=CLIENT_KEY, max_retries=0, timeout=60,
                           default_headers={"x-sluice-max-wait": str(MAX_WAIT)})

    def one(i: int) -> str | int:
        try:
            if i % stream_every == 0:
                chunks = client.chat.completions.create(model="m", messages=MESSAGES, stream=True)
                return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
            return client.chat.completions.create(model="m", messages=MESSAGES).choices[0].message.content or ""
        except openai.APIStatusError as err:
            return err.status_code

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(one, range(n)))


def test_a_key_refused_mid_run_has_its_queued_jobs_served_by_the_sibling(make_system: Any) -> None:
    accounts = [{"name": "bad", "api_key": "sk-revoked", "limits": {"concurrency": 1}},
                {"name": "good", "api_key": "sk-right", "limits": {"concurrency": 32}}]
    models = [{"name": "m", "route": [{"account": "bad", "model": "x"}, {"account": "good", "model": "x"}]}]
    system: SluiceSystem = make_system(accounts=accounts, models=models, mock_args=["--latency-ms", "1000"])
    ready = f"{system.prefix}:{{bad}}:ready"
    with ThreadPoolExecutor(1) as background:
        started = time.monotonic()
        running = background.submit(ask, system, 24)  # idle accounts alternate: 12 each
        # the bad account (one at a time, 1 s each) has a queue when the provider revokes its key
        wait_until(lambda: int(system.redis.zcard(ready)) >= 5, what="a queue on the bad account")
        queued = int(system.redis.zcard(ready))
        system.mock_config(api_key="sk-right")
        results = running.result(timeout=60)
    elapsed = time.monotonic() - started
    failed = [r for r in results if not isinstance(r, str)]
    # at most the one job the bad account claims next fails (a 502: its key is refused, then the
    # account is blocked for minutes); every job queued behind it is pulled over and answered
    assert failed in ([], [502]), results
    assert all(r for r in results if isinstance(r, str))
    assert elapsed < MAX_WAIT - 5, elapsed  # well inside every request's deadline
    assert int(system.redis.hlen(f"{system.prefix}:{{bad}}:moved")) >= queued - 1
    assert system.redis.zcard(ready) == 0
    print(f"\n24 requests, {queued} queued on the refused account, {len(failed)} failed, {elapsed:.1f} s")


def test_an_account_whose_workers_all_died_has_its_queue_served_by_the_sibling(make_system: Any) -> None:
    accounts = [{"name": "orphan", "limits": {"concurrency": 4}}, {"name": "good", "limits": {"concurrency": 32}}]
    models = [{"name": "m", "route": [{"account": "orphan", "model": "x"}, {"account": "good", "model": "x"}]}]
    # lease 3 s: a worker heartbeats every second, so its account counts as gone after ~4 s of silence
    system: SluiceSystem = make_system(accounts=accounts, models=models, queue={"lease_seconds": 3},
                                       mock_args=["--latency-ms", "100"])
    for proc in system.workers["orphan"]:
        proc.kill()
        proc.wait()
    started = time.monotonic()
    results = ask(system, 16)
    print(f"\n16 requests, {int(system.redis.hlen(f'{system.prefix}:{{orphan}}:moved'))} pulled from the "
          f"dead account, {time.monotonic() - started:.1f} s")
    assert all(isinstance(r, str) and r for r in results), results
    assert int(system.redis.hlen(f"{system.prefix}:{{orphan}}:moved")) >= 1


def test_jobs_running_when_all_their_workers_died_are_finished_by_the_sibling(make_system: Any) -> None:
    """Not only the queue: the jobs the dead workers were running come back when their leases run
    out (the sibling's rebalancer re-queues them, as the dead account's own claim would) and are
    served by the sibling, whole."""
    accounts = [{"name": "orphan", "limits": {"concurrency": 4}}, {"name": "good", "limits": {"concurrency": 32}}]
    models = [{"name": "m", "route": [{"account": "orphan", "model": "x"}, {"account": "good", "model": "x"}]}]
    system: SluiceSystem = make_system(accounts=accounts, models=models, queue={"lease_seconds": 2},
                                       mock_args=["--latency-ms", "1500"])
    with ThreadPoolExecutor(1) as pool:
        answers = pool.submit(ask, system, 8)
        wait_until(lambda: system.counter("orphan", "claimed") >= 1, what="a job running on the orphan")
        for proc in system.workers["orphan"]:
            proc.kill()
            proc.wait()
        results = answers.result(timeout=90)
    assert all(isinstance(r, str) and r for r in results), results
    assert int(system.redis.zcard(f"{system.prefix}:{{orphan}}:inflight")) == 0


def test_batch_lines_on_a_refused_key_move_to_the_sibling_and_each_is_recorded_once(make_system: Any) -> None:
    # good's concurrency is low on purpose: pulled lines then wait on its batch lane across the
    # coordinator's sweeps, which must follow them there (not feed them again as lost)
    accounts = [{"name": "bad", "api_key": "sk-revoked", "limits": {"concurrency": 1}},
                {"name": "good", "api_key": "sk-right", "limits": {"concurrency": 4}}]
    models = [{"name": "m", "route": [{"account": "bad", "model": "x"}, {"account": "good", "model": "x"}]}]
    system: SluiceSystem = make_system(accounts=accounts, models=models, batchers=1,
                                       mock_args=["--latency-ms", "1000"])
    n = 24
    api = openai_client(system)
    lines = [chat_line(f"f{i}", model="m", text=f"n{i}") for i in range(n)]
    uploaded = api.files.create(file=("in.jsonl", jsonl(lines)), purpose="batch")
    batch = api.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h")
    bready = f"{system.prefix}:{{bad}}:bready"
    wait_until(lambda: int(system.redis.zcard(bready)) >= 4, what="batch lines queued on the bad account")
    system.mock_config(api_key="sk-right")
    done = wait_for_status(api, batch.id, ("completed",), timeout=60)
    out, err = results(api, done.output_file_id), results(api, done.error_file_id)
    ids = Counter(r["custom_id"] for r in out + err)
    assert [k for k, c in ids.items() if c > 1] == [] and set(ids) == {f"f{i}" for i in range(n)}
    assert len(err) <= 1  # at most the one line the bad account claims next (its key is refused)
    assert done.request_counts is not None
    assert (done.request_counts.completed, done.request_counts.failed) == (len(out), len(err))
    moved = int(system.redis.hlen(f"{system.prefix}:{{bad}}:moved"))
    assert moved >= 1
    # each line ran once: none was taken for lost and fed again after it moved
    claims = system.counter("bad", "claimed") + system.counter("good", "claimed")
    assert claims == n, f"{claims} claims for {n} lines"
    print(f"\n{n} batch lines, {moved} moved off the refused key, {len(err)} failed")
