"""Every custom_id ends in the results exactly once, whatever dies mid-batch: SIGKILL of the API,
every worker and the coordinator; a redis-server (AOF on) killed and started again on its files;
or one started again on an older copy of its AOF, having lost its last seconds (this one fails
without finalize's dedupe). Sizes are small so CI stays quick; the `slow` variant runs a larger
batch and more kills. An embeddings batch whose lines split into several upstream calls (one job
per part) takes the same SIGKILLs."""

from __future__ import annotations

import signal
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from shared.redis.embedded import EmbeddedRedis, free_port
from tests.batches.helpers import (
    chat_line,
    embedding_line,
    embedding_model,
    jsonl,
    openai_client,
    results,
    wait_for_status,
)
from tests.conftest import SluiceSystem, two_account_model, wait_until

FAST = {"lease_seconds": 1.0}  # the coordinator's lease: a killed one's batch moves on within ~1 s
QUEUE = {"lease_seconds": 1.0}  # the workers' leases, likewise


EMBEDDING_PARTS = 3  # inputs of an embeddings line: one per upstream call, so three parts a line


def start(make: Callable[..., SluiceSystem], rpm: int) -> SluiceSystem:
    accounts, models = two_account_model(rpm=rpm)
    models.append(embedding_model(accounts, 1))
    return make(accounts=accounts, models=models, batchers=2, batches=FAST, queue=QUEUE)


def submit(system: SluiceSystem, n: int, embeddings: bool = False) -> str:
    api = openai_client(system)
    if embeddings:
        lines = [embedding_line(f"f{i}", [f"n{i}.{k}" for k in range(EMBEDDING_PARTS)]) for i in range(n)]
    else:
        lines = [chat_line(f"f{i}", text=f"n{i}") for i in range(n)]
    uploaded = api.files.create(file=("in.jsonl", jsonl(lines)), purpose="batch")
    endpoint = "/v1/embeddings" if embeddings else "/v1/chat/completions"
    batch = api.batches.create(input_file_id=uploaded.id, endpoint=endpoint, completion_window="24h")
    return batch.id


def _status(system: SluiceSystem, batch_id: str) -> str:
    try:
        return openai_client(system).batches.retrieve(batch_id).status
    except Exception:  # the API may be down or Redis away for a moment
        return ""


def completed(system: SluiceSystem, batch_id: str) -> int:
    try:
        return openai_client(system).batches.retrieve(batch_id).request_counts.completed or 0  # type: ignore[union-attr]
    except Exception:
        return 0


def supervise(system: SluiceSystem) -> None:
    """What compose's restart policy does: start again whatever kind of process has none left."""
    for account, procs in system.workers.items():
        if all(p.poll() is not None for p in procs):
            system.start_worker(account)
    if all(p.poll() is not None for p in system.batchers):
        system.start_batcher()
    if system.api.poll() is not None:
        system.start_api()


def exactly_once(system: SluiceSystem, batch_id: str, n: int) -> None:
    api = openai_client(system)

    def finished() -> bool:
        supervise(system)
        return _status(system, batch_id) == "completed"

    wait_until(finished, 120, f"batch {batch_id} to complete")
    done = wait_for_status(api, batch_id, ("completed",), 5)
    out, err = results(api, done.output_file_id), results(api, done.error_file_id)
    ids = Counter(r["custom_id"] for r in out + err)
    assert [k for k, c in ids.items() if c > 1] == [], "a custom_id appears twice"
    assert set(ids) == {f"f{i}" for i in range(n)}, "a custom_id is missing"
    assert err == [] and len(out) == n
    counts = done.request_counts
    assert (counts.total, counts.completed, counts.failed) == (n, n, 0), "counters disagree with the files"
    for r in out:  # each answer is the one for its own line
        assert r["response"]["status_code"] == 200 and r["response"]["request_id"].endswith(
            "." + r["custom_id"][1:])
        body = r["response"]["body"]
        if body["object"] == "list":  # an embeddings line: all its parts, joined in order
            assert [d["index"] for d in body["data"]] == list(range(EMBEDDING_PARTS))


def kill_everything_but_redis(system: SluiceSystem) -> None:
    for proc in [system.api, *system.batchers, *(p for ps in system.workers.values() for p in ps)]:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)


def restart_everything(system: SluiceSystem) -> None:
    for account in system.workers:
        system.start_worker(account)
    system.start_batcher()
    system.start_batcher()
    system.start_api()


def sigkill_round(make: Callable[..., SluiceSystem], n: int, kills: int, rpm: int,
                  embeddings: bool = False) -> None:
    system = start(make, rpm)
    batch_id = submit(system, n, embeddings)
    for k in range(kills):
        target = n * (k + 1) // (kills + 2)
        wait_until(lambda t=target: completed(system, batch_id) >= t, 60, f"{target} lines done")  # type: ignore[misc]
        kill_everything_but_redis(system)
        restart_everything(system)
    exactly_once(system, batch_id, n)


def test_sigkill_of_api_workers_and_coordinators_mid_batch(make_system: Callable[..., SluiceSystem]) -> None:
    sigkill_round(make_system, n=120, kills=1, rpm=1200)


def test_sigkill_mid_batch_of_split_embedding_lines(make_system: Callable[..., SluiceSystem]) -> None:
    """Each line is three jobs, spread over both accounts: some lines are part done when
    everything dies. Every custom_id still ends once, with all of its vectors."""
    sigkill_round(make_system, n=60, kills=1, rpm=1200, embeddings=True)


@pytest.mark.slow
def test_repeated_sigkills_over_a_larger_batch(make_system: Callable[..., SluiceSystem]) -> None:
    sigkill_round(make_system, n=600, kills=3, rpm=3000)


@pytest.fixture
def aof_redis(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """A redis-server of the test's own, AOF on, that the test can kill and start again."""
    state: dict[str, Any] = {"port": free_port(), "dir": tmp_path / "redis"}
    state["dir"].mkdir()
    state["server"] = EmbeddedRedis(port=state["port"], appendonly=True, data_dir=str(state["dir"]))
    yield state
    state["server"].stop()


def test_redis_restart_with_aof_mid_batch(tmp_path: Path, aof_redis: dict[str, Any]) -> None:
    n = 120
    accounts, models = two_account_model(rpm=1200)
    system = SluiceSystem(tmp_path, aof_redis["server"].url, accounts=accounts, models=models, batchers=2,
                          batches=FAST, queue=QUEUE)
    try:
        batch_id = submit(system, n)
        wait_until(lambda: completed(system, batch_id) >= n // 3, 60, "a third of the lines done")
        aof_redis["server"].process.send_signal(signal.SIGKILL)  # a crash: at most the last second is lost
        aof_redis["server"].process.wait(10)
        aof_redis["server"] = EmbeddedRedis(port=aof_redis["port"], appendonly=True, data_dir=str(aof_redis["dir"]))
        exactly_once(system, batch_id, n)
    finally:
        system.close()


def test_redis_that_lost_its_last_seconds_still_gives_each_line_once(tmp_path: Path,
                                                                      aof_redis: dict[str, Any]) -> None:
    """Worse than a clean restart: Redis comes back from an older copy of its AOF, so marks, feeds,
    queued jobs and answers of the last seconds are gone while their results sit in the store.
    Those lines run again; finalize must keep one result for each."""
    n = 120
    accounts, models = two_account_model(rpm=1200)
    system = SluiceSystem(tmp_path, aof_redis["server"].url, accounts=accounts, models=models, batchers=1,
                          batches=FAST, queue=QUEUE)
    aof = aof_redis["dir"] / "appendonly.aof"
    try:
        batch_id = submit(system, n)
        wait_until(lambda: completed(system, batch_id) >= n // 4, 60, "a quarter of the lines done")
        older = aof.read_bytes()  # Redis as it was here...
        wait_until(lambda: completed(system, batch_id) >= n // 2, 60, "half of the lines done")
        aof_redis["server"].process.send_signal(signal.SIGKILL)
        aof_redis["server"].process.wait(10)
        aof.write_bytes(older)  # ...is all it remembers
        aof_redis["server"] = EmbeddedRedis(port=aof_redis["port"], appendonly=True, data_dir=str(aof_redis["dir"]))
        exactly_once(system, batch_id, n)
    finally:
        system.close()
