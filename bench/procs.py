"""Process helpers for the benchmark: start and stop other servers (LiteLLM), read CPU time and
RSS from /proc. Sluice's own processes are started by `shared.system.System`.

Every server the bench starts is a child of ours, in a session of its own, so stopping it (and
whatever it forked: LiteLLM's worker processes) needs only the ids we were handed.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

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


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine spent not idle (all cores), from the first line of /proc/stat."""
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    return (user + nice + system + irq + softirq + steal) / CLK_TCK


def own_and_children_seconds() -> float:
    """CPU of this process plus its children that have exited and been waited for (k6, clients)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def rss_bytes(pids: Iterable[int]) -> int:
    total = 0
    for pid in pids:
        try:
            resident = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
        except (OSError, IndexError, ValueError):
            continue
        total += resident * PAGE
    return total


class HasPids(Protocol):
    def pids(self) -> list[int]: ...


class ProcessTree:
    """A process started elsewhere (by `shared.system.System`: Sluice, the mock, redis-server)
    and whatever it forked (a multi-process API's workers)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid

    def pids(self) -> list[int]:
        return [self.pid, *descendants(self.pid)] if _exists(self.pid) else []


@dataclass
class Group:
    """A named set of processes measured together (the API and its forks, say)."""

    name: str
    servers: list[HasPids]

    def pids(self) -> list[int]:
        return [pid for server in self.servers for pid in server.pids()]


class CpuMeter:
    """CPU seconds per group between `start()` and `stop()`.

    Descendants are listed again at every reading, so forked workers are counted. A thread reads
    every `interval` seconds and keeps each process's last value, so a process that exits in
    between (LiteLLM recycles its workers) loses at most one interval's share; a process that
    appears in between is counted from zero.
    """

    def __init__(self, groups: list[Group], interval: float = 1.0) -> None:
        self.groups = groups
        self.interval = interval
        self.before: dict[str, dict[int, float]] = {}
        self.last: dict[str, dict[int, float]] = {}
        self.used: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _read(self) -> None:
        for group in self.groups:
            seen = self.last.setdefault(group.name, {})
            for pid in group.pids():
                fields = _stat_fields(pid)
                if fields is not None:
                    seen[pid] = (int(fields[11]) + int(fields[12])) / CLK_TCK

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._read()

    def start(self) -> None:
        self.last = {}
        self._read()
        self.before = {name: dict(per_pid) for name, per_pid in self.last.items()}
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="cpu-meter", daemon=True)
        self._thread.start()

    def stop(self) -> dict[str, float]:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        self._read()
        self.used = {
            name: sum(seconds - self.before.get(name, {}).get(pid, 0.0) for pid, seconds in per_pid.items())
            for name, per_pid in self.last.items()
        }
        return self.used


class RssSampler:
    """Samples the RSS of each group every `interval` seconds in a thread; keeps first, peak and
    last, and with `keep_timeline` every sample. `probes` are sampled alongside under their own
    names (Redis's `used_memory`, say)."""

    def __init__(self, groups: list[Group], interval: float = 0.2, keep_timeline: bool = False,
                 probes: dict[str, Callable[[], int]] | None = None) -> None:
        self.groups = groups
        self.interval = interval
        self.probes = probes or {}
        names = [g.name for g in groups] + list(self.probes)
        self.peak: dict[str, int] = {name: 0 for name in names}
        self.first: dict[str, int] = {}
        self.last: dict[str, int] = {}
        self.timeline: list[tuple[float, dict[str, int]]] | None = [] if keep_timeline else None
        self._started = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def _sample(self) -> None:
        values = {group.name: rss_bytes(group.pids()) for group in self.groups}
        for name, probe in self.probes.items():
            with contextlib.suppress(Exception):  # a probe that fails once leaves a gap, not a crash
                values[name] = probe()
        for name, value in values.items():
            self.first.setdefault(name, value)
            self.last[name] = value
            self.peak[name] = max(self.peak[name], value)
        if self.timeline is not None:
            self.timeline.append((time.monotonic() - self._started, values))

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
