"""One way to start a whole Sluice system: Redis, mock providers, workers and the API.

`sluice dev`, the test fixtures (tests/conftest.py) and the benchmarks (bench/) all start Sluice
through `System`, so each runs the same processes the same way:

    options = SystemOptions(config={...} or Path("sluice.yaml"), mocks=[MockOptions("mock")])
    with System(options) as system:      # started and ready (every account has its workers)
        httpx.get(f"{system.base_url}/v1/models", ...)
                                         # stopped: SIGTERM, then SIGKILL after a grace period

Every process is `python -m shared.cli <role>`, exactly what an operator runs, in a session of its
own (so a multi-process API and its forks stop together and a terminal's Ctrl-C reaches only the
supervisor). Redis is the one at the given URL, or a private redis-server when asked or when none
answers. Mock providers come from `shared.mock`, which ships with a source checkout only
(`mock_available()`); a system whose options name no mocks does not need it.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, TYPE_CHECKING, Any, Literal
from urllib.parse import urlparse

import httpx
import msgspec
import yaml

from shared.config import Config, load_config
from shared.redis.embedded import EmbeddedRedis, free_port, reachable

if TYPE_CHECKING:
    from shared.mock.settings import MockSettings

Role = Literal["mock", "worker", "api", "batcher"]
EmbeddedPolicy = Literal["never", "if-unreachable", "always"]
SOURCE_ROOT = Path(__file__).resolve().parent.parent
MOCK_MISSING = (
    "the built-in mock provider (shared/mock) is not installed: it ships with the source checkout, "
    "not the wheel. Run Sluice from a checkout (`pip install -e '.[dev]'`), or point the config's "
    "accounts at real providers."
)


class StartupError(RuntimeError):
    """A process exited during start-up, or the system was not ready in time."""


def mock_available() -> bool:
    return importlib.util.find_spec("shared.mock") is not None


@dataclass(slots=True)
class MockOptions:
    """One mock provider process (`sluice mock-upstream`)."""

    name: str = "mock"
    port: int = field(default_factory=free_port)
    settings: MockSettings | None = None  # None: the mock's defaults
    host: str = "127.0.0.1"

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


@dataclass(slots=True)
class SystemOptions:
    config: Path | dict[str, Any] | None = None
    """A config file, the config's content (written to `log_dir` or a temp dir), or None for what
    `sluice` itself would load ($SLUICE_CONFIG, ./sluice.yaml, the demo config)."""
    redis_url: str | None = None
    """Overrides the config's redis_url."""
    embedded_redis: EmbeddedPolicy = "if-unreachable"
    """Start a private redis-server: never, only when the URL does not answer, or always."""
    mocks: list[MockOptions] | None = None
    """None: one default mock per port that the config's `provider: mock` accounts point at."""
    workers_per_account: int = 1
    batchers: int = 0  # batch coordinators (`sluice batcher`; `sluice dev` runs one)
    redis_appendonly: bool = False  # a private redis-server with AOF (`sluice dev`: batch state survives)
    api_host: str = "127.0.0.1"
    api_port: int = 0  # 0: a free port
    api_processes: int = 1
    log_dir: Path | None = None
    """Each process's output goes to <log_dir>/<label>.log; None: inherited (the terminal)."""
    log_level: str | None = None  # SLUICE_LOG_LEVEL of every process; None: the production default
    worker_log_level: str | None = None  # overrides log_level for workers
    ready_timeout: float = 60.0


@dataclass(slots=True)
class Child:
    """One process of the system."""

    label: str  # "api", "mock", "worker-<account>-<n>"
    role: Role
    process: subprocess.Popen[bytes]
    log_path: Path | None

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def tail(self, lines: int = 20) -> str:
        if self.log_path is None:
            return ""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def mocks_for(config: Config) -> list[MockOptions]:
    """One mock per distinct loopback port that the config's mock accounts point at (`sluice dev`)."""
    found: dict[int, MockOptions] = {}
    for account in config.accounts:
        if account.provider == "mock":
            url = urlparse(account.base_url)
            port = url.port or 80
            found.setdefault(port, MockOptions(f"mock-{port}", port, host=url.hostname or "127.0.0.1"))
    return list(found.values())


class System:
    """The processes of one Sluice system; `start()` returns when it is ready, `stop()` ends it all."""

    def __init__(self, options: SystemOptions) -> None:
        self.options = options
        self.children: list[Child] = []
        self.embedded: EmbeddedRedis | None = None
        self._files: list[IO[bytes]] = []
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._worker_counts: dict[str, int] = {}
        self.api_port = options.api_port or free_port()
        self.config_path: Path | None = None
        self.config = self._load_config()
        self.redis_url = options.redis_url or self.config.redis_url
        self.mocks = {m.name: m for m in (options.mocks if options.mocks is not None else mocks_for(self.config))}

    # --- what it is ---------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://{self.options.api_host}:{self.api_port}"

    @property
    def prefix(self) -> str:
        return self.config.key_prefix

    @property
    def env(self) -> dict[str, str]:
        """The environment every process gets (also right for running `sluice status` against it)."""
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        # A source checkout that is not installed still runs `python -m shared.cli` from anywhere.
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(SOURCE_ROOT), env.get("PYTHONPATH")) if p)
        env.pop("SLUICE_LOG_LEVEL", None)
        if self.options.log_level:
            env["SLUICE_LOG_LEVEL"] = self.options.log_level
        return env

    def mock_url(self, name: str = "mock") -> str:
        return self.mocks[name].url

    def of_role(self, role: Role) -> list[Child]:
        return [c for c in self.children if c.role == role]

    def workers(self, account: str) -> list[Child]:
        return [c for c in self.of_role("worker") if c.label.startswith(f"worker-{account}-")]

    def alive(self) -> list[str]:
        return [c.label for c in self.children if c.alive()]

    # --- start --------------------------------------------------------------------------------

    def _load_config(self) -> Config:
        source = self.options.config
        if isinstance(source, dict):
            directory = self._directory()
            self.config_path = directory / f"{source.get('key_prefix', 'sluice')}.yaml"
            self.config_path.write_text(yaml.safe_dump(source, sort_keys=False))
        elif source is not None:
            self.config_path = Path(source).resolve()
        return load_config(self.config_path)

    def _directory(self) -> Path:
        if self.options.log_dir is not None:
            self.options.log_dir.mkdir(parents=True, exist_ok=True)
            return self.options.log_dir
        if self._tmp is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="sluice-system-")
        return Path(self._tmp.name)

    def start(self) -> System:
        if self.mocks and not mock_available():
            raise StartupError(MOCK_MISSING)
        try:
            self._start_redis()
            for mock in self.mocks.values():
                self._start_mock(mock)
            for account in self.config.accounts:
                for _ in range(self.options.workers_per_account):
                    self.start_worker(account.name)
            for _ in range(self.options.batchers):
                self.start_batcher()
            self._start_api()
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _start_redis(self) -> None:
        policy = self.options.embedded_redis
        if policy == "always" or (policy == "if-unreachable" and not reachable(self.redis_url)):
            # with AOF (`sluice dev`), a Redis restart loses no queued job and no batch state
            self.embedded = EmbeddedRedis(appendonly=self.options.redis_appendonly)
            self.redis_url = self.embedded.url

    def _start_mock(self, mock: MockOptions) -> None:
        args = ["mock-upstream", "--host", mock.host, "--port", str(mock.port)]
        if mock.settings is not None:
            args += ["--settings", msgspec.json.encode(mock.settings).decode()]
        self._spawn(mock.name, "mock", args)

    def start_worker(self, account: str) -> Child:
        """One more worker process for `account` (tests restart killed workers with it)."""
        n = self._worker_counts.get(account, 0)
        self._worker_counts[account] = n + 1
        return self._spawn(f"worker-{account}-{n}", "worker", ["worker", "--account", account])

    def start_batcher(self) -> Child:
        """One more batch coordinator (replicas share batches by lease)."""
        return self._spawn(f"batcher-{len(self.of_role('batcher'))}", "batcher", ["batcher"])

    def _start_api(self) -> None:
        self._spawn("api", "api", ["api", "--host", self.options.api_host, "--port", str(self.api_port),
                                   "--workers", str(self.options.api_processes)])

    def restart_api(self) -> None:
        """Starts the API again on its port (tests that killed it) and waits until it is ready."""
        self.children = [c for c in self.children if c.alive()]  # the killed ones were reaped by their killer
        self._start_api()
        self.wait_ready()

    def _spawn(self, label: str, role: Role, args: list[str]) -> Child:
        env = self.env
        if role == "worker" and self.options.worker_log_level:
            env["SLUICE_LOG_LEVEL"] = self.options.worker_log_level
        if role in ("api", "worker", "batcher"):
            args = [*args, "--redis-url", self.redis_url]
            if self.config_path is not None:
                args += ["--config", str(self.config_path)]
        log_path = None
        out: IO[bytes] | None = None
        if self.options.log_dir is not None:
            log_path = self._directory() / f"{label}.log"
            out = log_path.open("ab")
            self._files.append(out)
        process = subprocess.Popen([sys.executable, "-m", "shared.cli", *args], env=env, stdout=out,
                                   stderr=subprocess.STDOUT if out else None, start_new_session=True)
        child = Child(label, role, process, log_path)
        self.children.append(child)
        return child

    def ready(self) -> bool:
        """Every mock answers, and the API is ready with every account's workers registered."""
        try:
            for mock in self.mocks.values():
                if httpx.get(f"{mock.url}/_stats", timeout=1).status_code != 200:
                    return False
            reply = httpx.get(f"{self.base_url}/readyz", timeout=1)
            if reply.status_code != 200:
                return False
            live: dict[str, int] = reply.json()["workers"]
        except (httpx.HTTPError, ValueError, KeyError):
            return False
        return all(live.get(a.name, 0) >= self.options.workers_per_account for a in self.config.accounts)

    def wait_ready(self) -> None:
        deadline = time.monotonic() + self.options.ready_timeout
        while not self.ready():
            dead = [c for c in self.children if not c.alive()]
            if dead:
                detail = "\n".join(f"--- {c.label} (exit {c.process.returncode}):\n{c.tail()}" for c in dead)
                raise StartupError(f"exited during start-up: {', '.join(c.label for c in dead)}\n{detail}")
            if time.monotonic() > deadline:
                raise StartupError(f"the system was not ready within {self.options.ready_timeout:g} s")
            time.sleep(0.05)  # polling child processes' readiness

    # --- stop ---------------------------------------------------------------------------------

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM to every process group (the API first, so no new work arrives), SIGKILL after
        `grace` seconds; then the private Redis, the log files and the temp dir."""
        order = self.of_role("api") + self.of_role("batcher") + self.of_role("worker") + self.of_role("mock")
        for child in order:
            if child.alive():
                _signal_group(child.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for child in order:
            try:
                child.process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal_group(child.pid, signal.SIGKILL)  # the leader is not reaped yet: its group is ours
                child.process.wait(5)
        if self.embedded is not None:
            self.embedded.stop()
            self.embedded = None
        for handle in self._files:
            handle.close()
        self._files.clear()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> System:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()


def _signal_group(pid: int, sig: signal.Signals) -> None:
    # Each child leads its own session, so its process group id is its pid; callers signal only
    # groups whose leader they have not reaped yet, so the id cannot belong to anyone else.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)
