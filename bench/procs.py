"""Process helpers for the benchmark: start and stop servers, read CPU time and RSS from /proc.

Every server the bench starts is a child of ours, in a session of its own, so stopping it (and
whatever it forked: uvicorn or LiteLLM worker processes) needs only the ids we were handed.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


class Server:
    """One child process (and its descendants), its output sent to a log file."""

    def __init__(self, name: str, argv: Sequence[str], log_dir: Path, env: dict[str, str] | None = None,
                 cwd: Path | None = None) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_dir / f"{name}.log"
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(self.argv, stdout=self._log, stderr=subprocess.STDOUT, env=env, cwd=cwd,
                                        start_new_session=True)
        self.pid = self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def pids(self) -> list[int]:
        """This process and all its live descendants."""
        return [self.pid, *descendants(self.pid)] if self.alive() else []

    def stop(self, timeout: float = 10.0) -> None:
        kids = descendants(self.pid) if self.alive() else []
        if self.alive():
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        for pid in kids:  # forked workers that outlived their parent
            if _exists(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        self._log.close()

    def tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def _exists(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


def _stat_fields(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name is in parentheses and may hold spaces: split after the last ')'.
    return raw[raw.rindex(")") + 2:].split()


def descendants(pid: int) -> list[int]:
    """Live descendants of `pid`, found through the ppid field of /proc/*/stat."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        fields = _stat_fields(int(entry))
        if fields is not None:
            children.setdefault(int(fields[1]), []).append(int(entry))
    found: list[int] = []
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def cpu_seconds(pids: Iterable[int]) -> float:
    """utime + stime of the given processes, in seconds (fields 14 and 15 of /proc/<pid>/stat)."""
    total = 0
    for pid in pids:
        fields = _stat_fields(pid)
        if fields is not None:
            total += int(fields[11]) + int(fields[12])  # utime, stime (0-based after the name)
    return total / CLK_TCK


def rss_bytes(pids: Iterable[int]) -> int:
    total = 0
    for pid in pids:
        try:
            resident = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
        except (OSError, IndexError, ValueError):
            continue
        total += resident * PAGE
    return total


@dataclass
class Group:
    """A named set of processes measured together (the API and its forks, say)."""

    name: str
    servers: list[Server]

    def pids(self) -> list[int]:
        return [pid for server in self.servers for pid in server.pids()]


@dataclass
class CpuMeter:
    """CPU seconds per group between `start()` and `stop()`.

    Descendants are listed again at every reading, so forked workers are counted; a process that
    exits between the readings loses its share, which does not happen to our long-lived servers.
    """

    groups: list[Group]
    before: dict[str, dict[int, float]] = field(default_factory=dict)
    used: dict[str, float] = field(default_factory=dict)

    def _read(self) -> dict[str, dict[int, float]]:
        return {g.name: {pid: cpu_seconds([pid]) for pid in g.pids()} for g in self.groups}

    def start(self) -> None:
        self.before = self._read()

    def stop(self) -> dict[str, float]:
        after = self._read()
        self.used = {
            name: sum(seconds - self.before.get(name, {}).get(pid, 0.0) for pid, seconds in per_pid.items())
            for name, per_pid in after.items()
        }
        return self.used


class RssSampler:
    """Samples the RSS of each group every `interval` seconds in a thread; keeps peak and last."""

    def __init__(self, groups: list[Group], interval: float = 0.2) -> None:
        self.groups = groups
        self.interval = interval
        self.peak: dict[str, int] = {g.name: 0 for g in groups}
        self.first: dict[str, int] = {}
        self.last: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def _sample(self) -> None:
        for group in self.groups:
            value = rss_bytes(group.pids())
            self.first.setdefault(group.name, value)
            self.last[group.name] = value
            self.peak[group.name] = max(self.peak[group.name], value)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self._sample()


def wait_http(url: str, server: Server | None = None, timeout: float = 60.0, ok: Iterable[int] = (200,)) -> bool:
    """Polls `url` until it answers with one of `ok`; False on timeout or if `server` dies."""
    accepted = set(ok)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server is not None and not server.alive():
            return False
        try:
            if httpx.get(url, timeout=2).status_code in accepted:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.2)  # polling a child process's readiness
    return False
