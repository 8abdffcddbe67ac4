"""`System`: the one way to start Redis, mocks, workers and the API, and to stop them all."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import httpx
import pytest

from shared.config import parse_config
from shared.mock.settings import MockSettings
from shared.redis.embedded import reachable
from shared.system import MockOptions, StartupError, System, SystemOptions, mocks_for
from tests.conftest import CLIENT_KEY, wait_until


def config_for(mock: MockOptions, prefix: str) -> dict[str, Any]:
    return {
        "key_prefix": prefix,
        "client_keys": [{"name": "tester", "key": CLIENT_KEY}],
        "accounts": [{"name": "solo", "provider": "mock", "base_url": f"{mock.url}/v1"}],
        "models": [{"name": "m", "route": [{"account": "solo", "model": "mock-small"}]}],
    }


def gone(system: System) -> bool:
    return all(child.process.poll() is not None for child in system.children)


def test_mocks_are_inferred_from_the_configs_mock_accounts() -> None:
    config = parse_config("""
accounts:
  - {name: a, provider: mock, base_url: "http://127.0.0.1:9311/v1"}
  - {name: b, provider: mock, base_url: "http://127.0.0.1:9311/v1"}
  - {name: c, provider: mock, base_url: "http://localhost:9312/v1"}
  - {name: d, provider: openai, api_key: x}
""", "inline")
    found = [(m.host, m.port) for m in mocks_for(config)]
    assert found == [("127.0.0.1", 9311), ("localhost", 9312)]


def test_a_whole_system_starts_ready_answers_and_stops(tmp_path: Path) -> None:
    mock = MockOptions("mock", settings=MockSettings(output_tokens=3, api_key="sk-upstream"))
    config = config_for(mock, "sys-start")
    config["accounts"][0]["api_key"] = "sk-upstream"
    system = System(SystemOptions(config=config, embedded_redis="always", mocks=[mock], workers_per_account=2,
                                  log_dir=tmp_path, log_level="WARNING", ready_timeout=60))
    with system:
        assert system.embedded is not None and system.redis_url == system.embedded.url
        assert [c.label for c in system.workers("solo")] == ["worker-solo-0", "worker-solo-1"]
        ready = httpx.get(f"{system.base_url}/readyz", timeout=5).json()
        assert ready["workers"] == {"solo": 2}
        reply = httpx.post(f"{system.base_url}/v1/chat/completions", timeout=30,
                           headers={"authorization": f"Bearer {CLIENT_KEY}"},
                           json={"model": "m", "messages": [{"role": "user", "content": "Hello"}]})
        assert reply.status_code == 200
        # The mock got its settings: three tokens, and only with the key it was given.
        assert reply.json()["usage"]["completion_tokens"] == 3
        assert (tmp_path / "api.log").exists() and (tmp_path / "sys-start.yaml").exists()
        redis_url = system.redis_url
    assert gone(system)
    assert not reachable(redis_url)  # the private Redis went with it


def test_a_process_that_dies_during_start_up_is_named_and_the_rest_is_stopped(
        tmp_path: Path, redis_url: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        mock = MockOptions("mock", port=taken.getsockname()[1])  # the mock cannot bind
        system = System(SystemOptions(config=config_for(mock, "sys-dies"), redis_url=redis_url,
                                      embedded_redis="never", mocks=[mock], log_dir=tmp_path, ready_timeout=60))
        with pytest.raises(StartupError, match=r"exited during start-up: mock"):
            system.start()
    assert system.children and gone(system)


def test_embedded_redis_only_when_the_url_does_not_answer(tmp_path: Path, redis_url: str) -> None:
    mock = MockOptions("mock")
    options = SystemOptions(config=config_for(mock, "sys-redis"), redis_url=redis_url, mocks=[mock],
                            log_dir=tmp_path)
    with System(options) as system:
        assert system.embedded is None and system.redis_url == redis_url


def children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat[stat.rindex(")") + 2:].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    """Running, not a zombie waiting for init to reap it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


def test_a_multi_process_api_stops_with_its_forks(tmp_path: Path, redis_url: str) -> None:
    mock = MockOptions("mock")
    options = SystemOptions(config=config_for(mock, "sys-forks"), redis_url=redis_url, embedded_redis="never",
                            mocks=[mock], api_processes=2, log_dir=tmp_path)
    with System(options) as system:
        [api] = system.of_role("api")
        forks = children_of(api.pid)
        assert len(forks) >= 2  # uvicorn's two worker processes (and its multiprocessing helper)
    wait_until(lambda: not [pid for pid in forks if alive(pid)], 10, "the forks to exit")
