"""Helpers for bench/limits.py: a whole Sluice system as processes, load, measurements, the doc.

Everything runs on 127.0.0.1: one private redis-server for the whole run (each scenario gets its
own key prefix), one or more mock upstreams, worker processes and one API process per scenario.
Every wait has a deadline; every child process is stopped (SIGTERM, then SIGKILL) on the way out.
"""

from __future__ import annotations

import asyncio
import bisect
import itertools
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import httpx
import orjson
import redis.asyncio as aioredis
import yaml

from shared.config import load_config
from shared.redis.embedded import free_port
from shared.redis.keys import Keys
from shared.status import collect

ROOT = Path(__file__).resolve().parent.parent
CLIENT_KEY = "sk-bench-limits"
MODEL = "bench-model"
UPSTREAM_MODEL = "mock-small"
MAX_WAIT_SECONDS = 600


# --- a running system ------------------------------------------------------------------------


@dataclass(slots=True)
class AccountSpec:
    name: str
    mock: str  # the mock process that plays this account's provider
    limits: dict[str, Any]


@dataclass(slots=True)
class SystemSpec:
    mocks: dict[str, list[str]]  # mock name -> extra `sluice mock-upstream` arguments
    accounts: list[AccountSpec]
    replicas: int = 1  # worker processes per account
    queue: dict[str, Any] = field(default_factory=dict)


class Cluster:
    """Mock upstreams + workers + one API for one scenario, sharing the run's Redis."""

    def __init__(self, name: str, spec: SystemSpec, redis_url: str, log_dir: Path) -> None:
        self.name = name
        self.spec = spec
        self.log_dir = log_dir
        self.prefix = f"bl{uuid.uuid4().hex[:8]}"
        self.mock_ports = {mock: free_port() for mock in spec.mocks}
        self.api_port = free_port()
        self.base_url = f"http://127.0.0.1:{self.api_port}"
        accounts = [
            {
                "name": a.name,
                "provider": "mock",
                "base_url": f"{self.mock_url(a.mock)}/v1",
                "limits": a.limits,
            }
            for a in spec.accounts
        ]
        self.config_data: dict[str, Any] = {
            "redis_url": redis_url,
            "key_prefix": self.prefix,
            "client_keys": [{"name": "bench", "key": CLIENT_KEY}],
            "accounts": accounts,
            "models": [{"name": MODEL, "route": [{"account": a.name, "model": UPSTREAM_MODEL}
                                                 for a in spec.accounts]}],
            "queue": spec.queue,
        }
        self.config_path = log_dir / f"{name}.yaml"
        self.config_path.write_text(yaml.safe_dump(self.config_data, sort_keys=False))
        self.config = load_config(self.config_path)
        self.procs: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.worker_logs: dict[str, list[Path]] = {}
        self._files: list[Any] = []

    def mock_url(self, mock: str) -> str:
        return f"http://127.0.0.1:{self.mock_ports[mock]}"

    def _spawn(self, label: str, args: list[str], log_level: str) -> Path:
        path = self.log_dir / f"{self.name}-{label}.log"
        log = path.open("ab")
        self._files.append(log)
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "SLUICE_LOG_LEVEL": log_level}
        proc = subprocess.Popen([sys.executable, "-m", "shared.cli", *args], cwd=ROOT, env=env,
                                stdout=log, stderr=log)
        self.procs.append((label, proc))
        return path

    def start(self, timeout: float = 45.0) -> None:
        for mock, extra in self.spec.mocks.items():
            self._spawn(mock, ["mock-upstream", "--port", str(self.mock_ports[mock]), *extra], "WARNING")
        for account in self.spec.accounts:
            for i in range(self.spec.replicas):
                path = self._spawn(f"worker-{account.name}-{i}",
                                   ["worker", "--account", account.name, "--config", str(self.config_path)],
                                   "DEBUG")
                self.worker_logs.setdefault(account.name, []).append(path)
        self._spawn("api", ["api", "--config", str(self.config_path), "--port", str(self.api_port)],
                    "WARNING")
        deadline = time.monotonic() + timeout
        while not self._ready():
            dead = [label for label, proc in self.procs if proc.poll() is not None]
            if dead:
                raise RuntimeError(f"{self.name}: process(es) exited during start-up: {dead}; "
                                   f"see {self.log_dir}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name}: the system was not ready within {timeout:.0f} s")
            time.sleep(0.1)  # polling child processes' readiness

    def _ready(self) -> bool:
        try:
            for mock in self.spec.mocks:
                if httpx.get(f"{self.mock_url(mock)}/_stats", timeout=1).status_code != 200:
                    return False
            ready = httpx.get(f"{self.base_url}/readyz", timeout=1)
            if ready.status_code != 200:
                return False
            workers: dict[str, int] = ready.json()["workers"]
            return all(workers.get(a.name, 0) >= self.spec.replicas for a in self.spec.accounts)
        except (httpx.HTTPError, ValueError, KeyError):
            return False

    def alive(self) -> list[str]:
        return [label for label, proc in self.procs if proc.poll() is None]

    def stop(self) -> None:
        for _, proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for _, proc in self.procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        for log in self._files:
            log.close()
        self._files.clear()

    async def mock_stats(self, http: httpx.AsyncClient, mock: str) -> dict[str, Any]:
        reply = await http.get(f"{self.mock_url(mock)}/_stats", timeout=10)
        reply.raise_for_status()
        return dict(reply.json())

    async def status(self) -> dict[str, Any]:
        """What `sluice status --config F --json` prints, as a dict."""
        return dict(await collect(self.config))

    async def limiter_state(self, account: str) -> dict[str, float]:
        """The account's limiter hash (tat_*, blocked, and whatever else the worker keeps there)."""
        client = aioredis.Redis.from_url(self.config.redis_url)
        try:
            pending = client.hgetall(Keys(self.prefix).account(account).rl)
            raw = await cast("Awaitable[dict[bytes, bytes]]", pending)  # redis-py types it as a union
        finally:
            await client.aclose()
        return {k.decode(): float(v) for k, v in raw.items()}

    def worker_log_records(self, account: str, message_contains: str) -> list[dict[str, Any]]:
        records = []
        for path in self.worker_logs.get(account, []):
            for line in path.read_bytes().splitlines():
                if not line.startswith(b"{"):
                    continue
                try:
                    record = orjson.loads(line)
                except orjson.JSONDecodeError:
                    continue
                if isinstance(record, dict) and message_contains in str(record.get("msg", "")):
                    records.append(record)
        return records


# --- load ------------------------------------------------------------------------------------


@dataclass(slots=True)
class Outcome:
    index: int
    kind: str
    sent: float  # seconds since the scenario's t0
    done: float
    status: int  # 0 = transport error or given up by the bench
    prompt_tokens: int = 0
    completion_tokens: int = 0
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.status == 200

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


def make_client() -> httpx.AsyncClient:
    return httpx.AsyncClient(
        timeout=httpx.Timeout(MAX_WAIT_SECONDS + 300, connect=30),
        limits=httpx.Limits(max_connections=2000, max_keepalive_connections=2000),
        headers={"authorization": f"Bearer {CLIENT_KEY}", "x-sluice-max-wait": str(MAX_WAIT_SECONDS)},
    )


async def chat(http: httpx.AsyncClient, base_url: str, t0: float, index: int, kind: str, text: str,
               max_tokens: int) -> Outcome:
    body = {"model": MODEL, "messages": [{"role": "user", "content": text}], "max_tokens": max_tokens}
    sent = time.monotonic() - t0
    try:
        reply = await http.post(f"{base_url}/v1/chat/completions", json=body)
    except httpx.HTTPError as exc:
        return Outcome(index, kind, sent, time.monotonic() - t0, 0, error=f"{type(exc).__name__}: {exc}")
    done = time.monotonic() - t0
    if reply.status_code != 200:
        return Outcome(index, kind, sent, done, reply.status_code, error=reply.text[:300])
    usage = reply.json().get("usage") or {}
    return Outcome(index, kind, sent, done, 200, int(usage.get("prompt_tokens", 0)),
                   int(usage.get("completion_tokens", 0)))


async def keep_busy(start_one: Callable[[int], Coroutine[Any, Any, Outcome]], outstanding: int,
                    until: float, max_requests: int) -> list[asyncio.Task[Outcome]]:
    """Keeps `outstanding` requests open (so the account's queue never runs dry) until the monotonic
    time `until`; returns every task started, some possibly still running."""
    tasks: list[asyncio.Task[Outcome]] = []
    pending: set[asyncio.Task[Outcome]] = set()
    while time.monotonic() < until and len(tasks) < max_requests:
        while len(pending) < outstanding and len(tasks) < max_requests:
            task = asyncio.create_task(start_one(len(tasks)))
            tasks.append(task)
            pending.add(task)
        _, pending = await asyncio.wait(pending, timeout=max(0.0, until - time.monotonic()),
                                        return_when=asyncio.FIRST_COMPLETED)
    return tasks


async def drain(tasks: list[asyncio.Task[Outcome]], wait_s: float, t0: float) -> list[Outcome]:
    """Waits (bounded) for every request; one still open at the deadline counts as a failure."""
    if tasks:
        await asyncio.wait(tasks, timeout=wait_s)
    outcomes = []
    for i, task in enumerate(tasks):
        if task.done():
            outcomes.append(task.result())
        else:
            task.cancel()
            now = time.monotonic() - t0
            outcomes.append(Outcome(i, "?", now, now, 0, error=f"still open after the {wait_s:.0f} s drain"))
    return outcomes


async def at(t0: float, offset: float, action: Callable[[], Awaitable[Any]]) -> Any:
    """Runs `action` at monotonic time t0 + offset."""
    await asyncio.sleep(max(0.0, t0 + offset - time.monotonic()))
    return await action()


# --- measurements ----------------------------------------------------------------------------


def completed_between(outcomes: Iterable[Outcome], start: float, end: float) -> list[Outcome]:
    return sorted((o for o in outcomes if o.ok and start <= o.done < end), key=lambda o: o.done)


def paced_rate(done: list[Outcome], cost: Callable[[Outcome], float]) -> float | None:
    """Per-minute rate from the spacing of admissions: a paced limiter (GCRA, no burst) starts job
    k+1 exactly cost(k) x interval after job k, so sum(cost of all but the last) / (last - first)
    is the admitted rate without the +-1-job quantization of counting inside a fixed window."""
    if len(done) < 2:
        return None
    span = done[-1].done - done[0].done
    if span <= 0:
        return None
    return sum(cost(o) for o in done[:-1]) / span * 60


def max_in_window(times: list[float], width: float) -> int:
    times = sorted(times)
    best = 0
    for i, t in enumerate(times):
        best = max(best, bisect.bisect_left(times, t + width) - i)
    return best


@dataclass(slots=True)
class Cycles:
    """Answers that come in on/off bursts: `count` whole cycles (pause to pause)."""

    count: int
    rate: float | None  # answers per minute over the whole cycles
    period: float  # median cycle length, s
    pause: float  # median silent gap, s
    per_cycle: float  # median answers per cycle


def on_off_cycles(times: list[float], after: float, min_gap: float = 2.0) -> Cycles:
    """Cycles that start (first answer after a pause longer than `min_gap`) at or after `after`."""
    times = sorted(times)
    starts = [i for i in range(1, len(times)) if times[i] - times[i - 1] > min_gap and times[i] >= after]
    if len(starts) < 2:
        return Cycles(0, None, 0.0, 0.0, 0.0)
    first, last = times[starts[0]], times[starts[-1]]
    periods = [times[b] - times[a] for a, b in itertools.pairwise(starts)]
    sizes = [float(b - a) for a, b in itertools.pairwise(starts)]
    pauses = [times[i] - times[i - 1] for i in starts]
    return Cycles(len(starts) - 1, (starts[-1] - starts[0]) / (last - first) * 60, percentile(periods, 0.5),
                  percentile(pauses, 0.5), percentile(sizes, 0.5))


def window_range(times: list[float], width: float, start: float, end: float) -> tuple[int, int]:
    """Fewest and most of `times` in any window [t, t + width) with start <= t <= end - width."""
    times = sorted(times)
    counts = []
    t = start
    while t <= end - width + 1e-9:
        counts.append(bisect.bisect_left(times, t + width) - bisect.bisect_left(times, t))
        t += 0.05
    return (min(counts), max(counts)) if counts else (0, 0)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def status_counts(outcomes: Iterable[Outcome]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for o in outcomes:
        key = str(o.status) if o.status else "error"
        counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items()))


def machine_load() -> str:
    one, five, _ = os.getloadavg()
    return f"{one:.2f} (1 min) / {five:.2f} (5 min) on {os.cpu_count()} cores"


# --- the doc ---------------------------------------------------------------------------------

SECTION_HEADER = "## Rate-limit scenarios (bench/limits.py)"
_VERDICT = re.compile(r"^\*\*Verdict: (PASS|FAIL)\*\* — (.*)$", re.MULTILINE)


def _split_subsections(body: str) -> tuple[str, dict[str, str]]:
    """Section body -> (text before the first `### `, {subsection header: its text})."""
    parts = re.split(r"(?m)^(?=### )", body)
    head = parts[0] if parts and not parts[0].startswith("### ") else ""
    subs: dict[str, str] = {}
    for part in parts:
        if part.startswith("### "):
            subs[part.splitlines()[0].strip()] = part.rstrip() + "\n"
    return head, subs


def write_section(path: Path, intro: str, order: list[str], fresh: dict[str, str]) -> None:
    """Replaces only this bench's section of `path` (header to the next `## ` header or EOF).

    `fresh` maps subsection headers (`### ...`, one per scenario, in `order`) to their new text;
    subsections of scenarios not run this time are kept from the file as they were.
    """
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    lines = text.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if line.rstrip() == SECTION_HEADER), None)
    old_body = ""
    if start is None:
        before, after = text.rstrip("\n") + "\n\n", ""
    else:
        end = next((j for j in range(start + 1, len(lines)) if lines[j].startswith("## ")), len(lines))
        before = "".join(lines[:start])
        old_body = "".join(lines[start + 1:end])
        after = "".join(lines[end:])
    _, old = _split_subsections(old_body)
    subs = {h: fresh.get(h) or old.get(h) for h in order}
    rows = ["| Scenario | Verdict | Figures |", "|---|---|---|"]
    for header, sub in subs.items():
        if sub is None:
            continue
        match = _VERDICT.search(sub)
        verdict, summary = (match.group(1), match.group(2)) if match else ("?", "")
        rows.append(f"| {header.removeprefix('### ')} | {verdict} | {summary} |")
    body = [SECTION_HEADER, "", intro.strip(), "", *rows, ""]
    for sub in subs.values():
        if sub is not None:
            body += [sub.rstrip(), ""]
    section = "\n".join(body).rstrip() + "\n"
    if after:
        section += "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".md.tmp-limits")
    tmp.write_text(before + section + after)
    tmp.replace(path)
