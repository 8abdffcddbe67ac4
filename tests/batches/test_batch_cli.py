"""`sluice batch` against the running system: submit --wait turns a file of bare request bodies
into a results file; a second run resumes the same batch; status, list, results -o, cancel;
and `sluice status` / `/metrics` show a running batch."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from tests.batches.helpers import embedding_model
from tests.conftest import CLIENT_KEY, ROOT, SluiceSystem, two_account_model, wait_until


def sluice(system: SluiceSystem, *args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "shared.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env={**system.env, "SLUICE_API_KEY": CLIENT_KEY})


def batch(system: SluiceSystem, *args: str) -> subprocess.CompletedProcess[str]:
    return sluice(system, "batch", "--base-url", system.base_url, *args)


def test_submit_wait_results_and_resume(make_system: Callable[..., SluiceSystem], tmp_path: Path) -> None:
    accounts, models = two_account_model()
    system = make_system(accounts=accounts, models=models, batchers=1)
    source = tmp_path / "prompts.jsonl"
    source.write_text("".join(json.dumps({"messages": [{"role": "user", "content": f"p{i}"}], "max_tokens": 4})
                              + "\n" for i in range(15)))
    out = tmp_path / "out.jsonl"
    run = batch(system, "submit", str(source), "--model", "test-model", "--wait", "-o", str(out))
    assert run.returncode == 0, run.stderr
    batch_id = run.stdout.strip().splitlines()[0]
    assert batch_id.startswith("batch_") and "15/15" in run.stderr  # the progress bar's last frame
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(int(r["custom_id"]) for r in rows) == list(range(15))
    assert all(r["response"]["status_code"] == 200 for r in rows)
    again = batch(system, "submit", str(source), "--wait", "-o", str(tmp_path / "again.jsonl"))
    assert again.returncode == 0 and f"resuming batch {batch_id}" in again.stderr  # no second batch
    assert len((tmp_path / "again.jsonl").read_text().splitlines()) == 15
    status = batch(system, "status", batch_id)
    assert json.loads(status.stdout)["status"] == "completed"
    assert batch_id in batch(system, "list").stdout
    assert len(batch(system, "results", batch_id).stdout.splitlines()) == 15


def test_status_and_metrics_show_a_running_batch(make_system: Callable[..., SluiceSystem], tmp_path: Path) -> None:
    accounts, models = two_account_model(rpm=60)
    system = make_system(accounts=accounts, models=models, batchers=1)
    source = tmp_path / "slow.jsonl"
    source.write_text("".join(json.dumps({"messages": [{"role": "user", "content": "x"}], "max_tokens": 4}) + "\n"
                              for _ in range(40)))
    batch_id = batch(system, "submit", str(source), "--model", "test-model").stdout.strip()
    internal = batch_id.removeprefix("batch_")
    wait_until(lambda: internal in sluice(system, "status", "--config", str(system.config_path)).stdout, 30,
               "the batch in sluice status")
    metrics = httpx.get(f"{system.base_url}/metrics", timeout=10).text
    assert f'sluice_batch_lines{{batch="{internal}",state="total"}} 40' in metrics
    assert 'sluice_batch_account_lines{account="acct-' in metrics
    assert f'sluice_batch_lines{{batch="{internal}",state="running"}}' in metrics
    cancelled = json.loads(batch(system, "cancel", batch_id).stdout)
    assert cancelled["status"] in ("cancelling", "cancelled")


def test_submit_embeddings_and_see_split_lines_in_status(make_system: Callable[..., SluiceSystem],
                                                          tmp_path: Path) -> None:
    """Bare embedding bodies with `--endpoint /v1/embeddings`; each line is two upstream calls,
    and `/metrics` counts a running batch's lines once however many parts they have, and each
    account's batch work once per upstream call."""
    accounts, models = two_account_model(rpm=60)
    models.append(embedding_model(accounts, 2))
    system = make_system(accounts=accounts, models=models, batchers=1)
    source = tmp_path / "texts.jsonl"
    source.write_text("".join(json.dumps({"input": [f"t{i}.{k}" for k in range(4)]}) + "\n" for i in range(30)))
    batch_id = batch(system, "submit", str(source), "--endpoint", "/v1/embeddings", "--model", "embed").stdout.strip()
    internal = batch_id.removeprefix("batch_")

    def lines_in_flight() -> bool:
        metrics = httpx.get(f"{system.base_url}/metrics", timeout=10).text
        states = {s: int(v) for s in ("queued", "running", "total") for line in metrics.splitlines()
                  if line.startswith(f'sluice_batch_lines{{batch="{internal}",state="{s}"}}')
                  for v in [line.rsplit(" ", 1)[1]]}
        calls = sum(int(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
                    if line.startswith("sluice_batch_account_lines{"))
        in_flight = states.get("queued", 0) + states.get("running", 0)
        # per account, one per upstream call: two for each line in flight (read from one snapshot)
        return states.get("total") == 30 and 0 < in_flight <= 30 and calls == 2 * in_flight

    wait_until(lines_in_flight, 30, "the batch's lines in flight in /metrics")
    cancelled = json.loads(batch(system, "cancel", batch_id).stdout)
    assert cancelled["status"] in ("cancelling", "cancelled")
    ended = wait_until_status(system, batch_id, "cancelled")
    counts = ended["request_counts"]
    assert counts["total"] == 30 and counts["completed"] + counts["failed"] == 30


def wait_until_status(system: SluiceSystem, batch_id: str, status: str) -> dict[str, Any]:
    seen: dict[str, Any] = {}

    def reached() -> bool:
        seen.update(json.loads(batch(system, "status", batch_id).stdout))
        return bool(seen["status"] == status)

    wait_until(reached, 60, f"batch {batch_id} {status}")
    return seen
