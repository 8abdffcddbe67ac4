"""`sluice batch` against the running system: submit --wait turns a file of bare request bodies
into a results file; a second run resumes the same batch; status, list, results -o, cancel;
and `sluice status` / `/metrics` show a running batch."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx

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
