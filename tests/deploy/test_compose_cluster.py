"""deploy/compose.cluster.yaml: a 3-primary Redis Cluster, 2 API replicas, 2 workers per account.

Docker is not on the test machines, so the file is checked for its structure, and its Redis
commands run for real: the nodes' flags on loopback redis-servers, then its init command, which
must form one cluster of three primaries and be a no-op the second time.
"""

from __future__ import annotations

import os
import shlex
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml

from shared.config import parse_config
from shared.redis.embedded import free_port
from shared.redis.topology import modern_redis_binary
from tests.conftest import ROOT, wait_until

DEPLOY = ROOT / "deploy"
COMPOSE = yaml.safe_load((DEPLOY / "compose.cluster.yaml").read_text())
NODES = ("redis-1", "redis-2", "redis-3")


def services() -> dict[str, Any]:
    return dict(COMPOSE["services"])


def test_three_cluster_nodes_and_an_init_that_joins_exactly_them() -> None:
    s = services()
    for node in NODES:
        command = " ".join(s[node]["command"])
        assert "--cluster-enabled yes" in command and "--appendonly yes" in command
        assert s[node]["hostname"] == node
    init = " ".join(s["redis-cluster-init"]["command"])
    assert "--cluster create redis-1:6379 redis-2:6379 redis-3:6379 --cluster-replicas 0" in init
    assert set(s["redis-cluster-init"]["depends_on"]) == set(NODES)


def test_every_sluice_process_uses_the_cluster_and_waits_for_it() -> None:
    s = services()
    sluice = {name: svc for name, svc in s.items() if "build" in svc}
    assert set(sluice) >= {"api", "batcher", "worker-openai-1"}
    for name, svc in sluice.items():
        url = svc["environment"]["REDIS_URL"]
        assert url == "redis+cluster://" + ",".join(f"{n}:6379" for n in NODES), name
        assert svc["depends_on"] == {"redis-cluster-init": {"condition": "service_completed_successfully"}}, name
    assert s["api"]["deploy"]["replicas"] == 2
    assert s["api"]["ports"] == ["8080-8081:8080"]  # one host port per replica
    # Listening on 0.0.0.0 needs an admin token, and both replicas one key secret (the same variable);
    # only the API gets them.
    assert s["api"]["environment"]["SLUICE_ADMIN_TOKEN"].startswith("${SLUICE_ADMIN_TOKEN:?")
    assert s["api"]["environment"]["SLUICE_KEY_SECRET"].startswith("${SLUICE_KEY_SECRET")
    assert all("SLUICE_ADMIN_TOKEN" not in svc["environment"] for name, svc in sluice.items() if name != "api")


def test_two_workers_for_every_account_of_the_config() -> None:
    config = parse_config((DEPLOY / "sluice.yaml").read_text(), env={
        "REDIS_URL": "redis://x", "SLUICE_KEY_TEAM_A": "k", "OPENAI_KEY_1": "k"})
    workers = {svc["command"][svc["command"].index("--account") + 1]: svc
               for svc in services().values() if "worker" in svc.get("command", [])[:2]}
    assert set(workers) == {a.name for a in config.accounts}
    for svc in workers.values():
        assert svc["deploy"]["replicas"] == 2
        assert "--health-port" in svc["command"]
        assert any("/readyz" in part for part in svc["healthcheck"]["test"])


def test_docker_compose_accepts_the_file() -> None:
    if shutil.which("docker") is None or subprocess.run(["docker", "compose", "version"], capture_output=True,
                                                        timeout=30).returncode != 0:
        pytest.skip("docker compose is not installed here; the file's structure is checked above")
    done = subprocess.run(["docker", "compose", "-f", str(DEPLOY / "compose.cluster.yaml"), "config", "--quiet"],
                          capture_output=True, text=True, timeout=60,
                          env={"SLUICE_KEY_TEAM_A": "k", "OPENAI_KEY_1": "k", "SLUICE_ADMIN_TOKEN": "t" * 32,
                               "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr


def redis7() -> str | None:
    binary = modern_redis_binary()
    if binary is None:
        return None
    # the redis-cli beside it (the init command's --cluster create needs a 7's)
    cli = Path(binary).with_name("redis-cli")
    return binary if cli.exists() else None


@pytest.fixture
def nodes(tmp_path: Path) -> Iterator[list[int]]:
    """The compose file's three nodes on loopback: its exact flags, with a port and a data dir each."""
    binary = redis7()
    if binary is None:
        pytest.skip("no redis-server 7 on PATH (the nodes announce hostnames, a Redis 7 flag)")
    script = services()["redis-1"]["command"][2]
    flags = shlex.split(script.removeprefix("exec redis-server").replace("$$(hostname)", "localhost"))
    ports, processes = [], []
    for i in range(3):
        port = cluster_port()
        data = tmp_path / f"node-{i}"
        data.mkdir()
        args = [a.replace("/data/", f"{data}/") for a in flags]
        args[args.index("--port") + 1] = str(port)
        processes.append(subprocess.Popen([binary, *args, "--bind", "127.0.0.1", "--dir", str(data)],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        ports.append(port)
    try:
        for port in ports:
            wait_until(lambda p=port: _pings(p), what=f"cluster node on {port}")
        yield ports
    finally:
        for process in processes:
            process.kill()
            process.wait(10)


def cluster_port() -> int:
    """A free port whose cluster bus port (+10000) is free too."""
    while True:
        port = free_port()
        if port > 55535:
            continue
        with socket.socket() as bus:
            try:
                bus.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port


def _pings(port: int) -> bool:
    try:
        with redis.Redis(port=port, socket_timeout=1) as client:
            return bool(client.ping())
    except redis.RedisError:
        return False


def test_the_node_flags_and_the_init_command_form_one_three_primary_cluster(nodes: list[int]) -> None:
    init = services()["redis-cluster-init"]["command"][2]
    for name, port in zip(NODES, nodes, strict=True):
        init = init.replace(f"-h {name}", f"-h 127.0.0.1 -p {port}").replace(f"{name}:6379", f"127.0.0.1:{port}")
    assert "redis-" not in init.replace("redis-cli", "")  # every host was mapped to a loopback node
    binary = redis7()
    assert binary is not None
    cli_env = {**os.environ, "PATH": f"{Path(binary).parent}{os.pathsep}{os.environ.get('PATH', '')}"}  # its redis-cli
    for _ in range(2):  # the second run finds the cluster formed and leaves it alone
        done = subprocess.run(["sh", "-c", init], capture_output=True, text=True, timeout=60, env=cli_env)
        assert done.returncode == 0, done.stdout + done.stderr
        with redis.Redis(port=nodes[0], decode_responses=True) as client:
            wait_until(lambda c=client: "cluster_state:ok" in c.execute_command("CLUSTER", "INFO"),
                       what="cluster_state:ok")
    with redis.Redis(port=nodes[0], decode_responses=True) as client:
        info = dict(line.split(":", 1) for line in client.execute_command("CLUSTER", "INFO").split() if ":" in line)
        assert info["cluster_known_nodes"] == "3" and info["cluster_size"] == "3"
        assert info["cluster_slots_assigned"] == "16384"
