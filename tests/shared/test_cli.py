"""The `sluice` command: mock settings from flags, `check-config`, and `sluice dev` as a user runs it."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import yaml

from shared.cli import build_parser, main, mock_settings
from shared.mock.settings import MockSettings
from shared.redis.embedded import free_port
from tests.conftest import ROOT, wait_until


def test_mock_settings_come_from_the_flags() -> None:
    args = build_parser().parse_args(["mock-upstream", "--rpm", "30", "--latency-ms", "400", "--api-key", "k",
                                      "--bucket-seconds", "2"])
    assert mock_settings(args) == MockSettings(rpm=30, latency_ms=400, api_key="k", bucket_seconds=2)


def test_settings_json_wins_over_the_flags() -> None:
    args = build_parser().parse_args(["mock-upstream", "--rpm", "30", "--settings", '{"output_tokens": 3}'])
    assert mock_settings(args) == MockSettings(output_tokens=3)


def test_bad_mock_settings_are_refused_with_the_reason(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["mock-upstream", "--settings", '{"chunk_tokens": 0}'])
    assert done.value.code == 2
    assert "chunk_tokens must be at least 1" in capsys.readouterr().err


def test_check_config_names_what_it_found(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({
        "client_keys": [{"name": "t", "key": "sk-t"}],
        "accounts": [{"name": "a", "provider": "mock", "base_url": "http://127.0.0.1:1/v1", "limits": {"rpm": 7}}],
        "models": [{"name": "m", "route": [{"account": "a", "model": "x"}]}],
    }))
    main(["check-config", "--config", str(path)])
    out = capsys.readouterr().out
    assert "config ok: 1 accounts, 1 models, 1 client keys" in out
    assert "account a: mock at http://127.0.0.1:1/v1 (rpm=7" in out and "model m -> a:x" in out


def test_dev_with_a_bad_config_says_where(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("accounts:\n  - {name: a, provider: nope}\n")
    done = subprocess.run([sys.executable, "-m", "shared.cli", "dev", "--config", str(path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "bad.yaml" in done.stderr and "provider" in done.stderr


def test_sluice_dev_starts_everything_and_ctrl_c_stops_everything(tmp_path: Path, redis_url: str) -> None:
    mock_port, api_port = free_port(), free_port()
    path = tmp_path / "dev.yaml"
    path.write_text(yaml.safe_dump({
        "key_prefix": "cli-dev",
        "client_keys": [{"name": "t", "key": "sk-dev"}],
        "accounts": [{"name": "a", "provider": "mock", "base_url": f"http://127.0.0.1:{mock_port}/v1"}],
        "models": [{"name": "m", "route": [{"account": "a", "model": "mock-small"}]}],
    }))
    log = (tmp_path / "dev.log").open("wb")
    dev = subprocess.Popen([sys.executable, "-m", "shared.cli", "dev", "--config", str(path), "--port", str(api_port),
                            "--redis-url", redis_url, "--replicas", "2"], cwd=ROOT, stdout=log, stderr=log)
    api, mock = f"http://127.0.0.1:{api_port}", f"http://127.0.0.1:{mock_port}"

    def answers(url: str) -> bool:
        try:
            return httpx.get(url, timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_until(lambda: b"Sluice is up" in (tmp_path / "dev.log").read_bytes(), 60, "the banner")
        assert httpx.get(f"{api}/readyz", timeout=5).json()["workers"] == {"a": 2}
        reply = httpx.post(f"{api}/v1/chat/completions", headers={"authorization": "Bearer sk-dev"}, timeout=30,
                           json={"model": "m", "messages": [{"role": "user", "content": "Hi"}]})
        assert reply.status_code == 200
        dev.send_signal(signal.SIGINT)  # what Ctrl-C sends
        assert dev.wait(30) == 0
        assert not answers(f"{api}/healthz") and not answers(f"{mock}/_stats")
    finally:
        if dev.poll() is None:
            dev.kill()
        log.close()
