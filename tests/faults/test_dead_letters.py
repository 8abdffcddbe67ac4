"""A job that fails past its retries lands in the dead-letter queue with why; its client got a
clear error; `sluice dlq list|show|replay|purge` works on it (real processes, the real CLI)."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import openai
import pytest

from tests.conftest import CLIENT_KEY, SluiceSystem, wait_until


def dlq(system: SluiceSystem, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "shared.cli", "dlq", *args, "--config", str(system.config_path)],
                          env=system.env, capture_output=True, text=True, timeout=60)


def test_dead_letters_are_listed_shown_replayed_and_purged(make_system: Any) -> None:
    # every call times out (1 s timeout, the mock answers after 3 s): retried, then dead-lettered
    accounts = [{"name": "slowpoke", "timeout_seconds": 1}]
    models = [{"name": "m", "route": [{"account": "slowpoke", "model": "x"}]}]
    # two retries with short backoffs (defaults: three, from 0.25 s): 3 attempts of 1 s per request
    system: SluiceSystem = make_system(accounts=accounts, models=models, mock_args=["--latency-ms", "3000"],
                                       queue={"upstream_retries": 2, "retry_base_seconds": 0.05})
    client = openai.OpenAI(base_url=f"{system.base_url}/v1", api_key=CLIENT_KEY, max_retries=0, timeout=60)
    ids = []
    for stream in (False, True):
        with pytest.raises(openai.APIStatusError) as failure:
            if stream:
                list(client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}],
                                                     stream=True))
            else:
                client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
        if not stream:
            assert failure.value.status_code == 504 and "timed out" in str(failure.value.body)
    wait_until(lambda: system.counter("slowpoke", "dead") == 2, what="two dead letters")

    listed = dlq(system, "list", "--json")
    assert listed.returncode == 0, listed.stderr
    letters = json.loads(listed.stdout)
    assert [(d["account"], d["kind"], d["attempts"]) for d in letters] == [("slowpoke", "upstream_timeout", 3)] * 2
    ids = [d["job_id"] for d in letters]
    table = dlq(system, "list").stdout
    assert all(i in table for i in ids) and "upstream failed after 3 attempts" in table
    shown = json.loads(dlq(system, "show", ids[0]).stdout)
    assert shown["letter"]["job_id"] == ids[0] and shown["job"]["request"]["model"] == "m"
    assert dlq(system, "show", "no-such-job").returncode == 1

    system.mock_config(latency_ms=0)  # the provider recovers
    replayed = dlq(system, "replay", ids[0])
    assert replayed.stdout.strip() == "1 re-queued", replayed.stderr
    wait_until(lambda: system.counter("slowpoke", "completed") == 1, what="the replayed job to complete")
    record = system.redis.xrange(f"{system.prefix}:out:{{{ids[0]}}}")
    assert record and b"complete" in record[-1][1][b"d"].lower()
    assert dlq(system, "purge", "--all").stdout.strip() == "1 purged"
    assert json.loads(dlq(system, "list", "--json").stdout) == []
    assert system.redis.hget(f"{system.prefix}:{{slowpoke}}:jobs", ids[1]) is None
