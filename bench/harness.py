"""The bench's harness: the targets under test (the mock itself, Sluice, Portkey, LiteLLM), started once
per run, and the shared steps of every row: k6 runs, mock control, settling between targets."""

from __future__ import annotations

import csv
import json
import os
import secrets
import subprocess
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from bench.log import log
from bench.plan import Plan
from bench.portkey import PORTKEY_VERSION, ensure_portkey, launch_portkey, node_version, provider_headers
from bench.procs import CpuMeter, Group, HasPids, ProcessTree, Server, machine_busy_seconds, wait_http
from bench.stream_client import percentile
from bench.tools import BENCH, LITELLM_VENV, LITELLM_VERSION, ensure_litellm
from shared.redis.embedded import EmbeddedRedis, free_port
from shared.system import Child, MockOptions, Role, System, SystemOptions

SLUICE_MODEL = "bench-model"
SLUICE_KEY = "sk-bench-client"
MOCK_MODEL = "mock-small"

# k6 error codes (https://grafana.com/docs/k6/latest/javascript-api/error-codes/) seen on loopback.
K6_ERRORS = {"1000": "generic error", "1050": "timeout", "1200": "TCP dial error", "1202": "dial timeout",
             "1210": "connection refused", "1211": "connection refused", "1212": "connection refused",
             "1220": "connection reset", "1221": "connection reset", "1310": "TCP reset", "1400": "HTTP/1 error"}


@dataclass
class Target:
    name: str
    url: str  # base URL ending in /v1
    model: str
    key: str
    cpu_groups: list[Group]  # whose CPU time counts as this target's cost per request
    rss_groups: list[Group]
    headers: dict[str, str] = field(default_factory=dict)  # sent with every request (Portkey's routing)


@dataclass
class Bench:
    plan: Plan
    results: Path
    k6: Path
    api_workers: int = 1
    want_litellm: bool = True
    want_portkey: bool = True
    servers: list[Server] = field(default_factory=list)
    system: System | None = None
    redis: EmbeddedRedis | None = None  # the system's private redis-server
    targets: list[Target] = field(default_factory=list)
    litellm_missing: str | None = None
    portkey_missing: str | None = None
    mock_url: str = ""
    groups: dict[str, Group] = field(default_factory=dict)

    def start(self) -> None:
        """The mock, a private redis-server and Sluice (one worker, production log level), as one
        `System`; then LiteLLM beside them unless left out."""
        upstream = MockOptions("mock")
        self.mock_url = upstream.url
        self.system = System(SystemOptions(
            config={
                "key_prefix": "bench",
                "client_keys": [{"name": "bench", "key": SLUICE_KEY}],
                "accounts": [{"name": "mock", "provider": "mock", "base_url": f"{self.mock_url}/v1",
                              "limits": {"concurrency": 2048}}],
                "models": [{"name": SLUICE_MODEL, "route": [{"account": "mock", "model": MOCK_MODEL}]}],
                # Finished records expire after a minute (default 15) so the soak reaches Redis's steady state.
                "queue": {"result_ttl_seconds": 60},
            },
            embedded_redis="always", mocks=[upstream], api_processes=self.api_workers, log_dir=self.results))
        try:
            self.system.start()
        except Exception as exc:
            raise SystemExit(f"bench: Sluice did not start: {exc}") from None
        self.redis = self.system.embedded
        assert self.redis is not None
        log(f"redis-server on {self.redis.url}")
        redis_group = Group("redis", [ProcessTree(self.redis.process.pid)])

        def tree(role: Role) -> list[HasPids]:
            return [ProcessTree(child.pid) for child in self.system_children(role)]

        self.groups = {"sluice-api": Group("sluice-api", tree("api")),
                       "sluice-worker": Group("sluice-worker", tree("worker")),
                       "redis": redis_group, "mock": Group("mock", tree("mock"))}
        sluice_groups = [self.groups["sluice-api"], self.groups["sluice-worker"], redis_group]
        api_url = self.system.base_url
        self.targets = [
            Target("direct", f"{self.mock_url}/v1", MOCK_MODEL, "x", [], [self.groups["mock"]]),
            Target("sluice", f"{api_url}/v1", SLUICE_MODEL, SLUICE_KEY, sluice_groups, sluice_groups),
        ]
        log(f"mock at {self.mock_url}, Sluice API at {api_url} ({self.api_workers} process(es)), 1 worker")
        if self.want_portkey:
            self._start_portkey()
        else:
            self.portkey_missing = "skipped (--no-portkey)"
        if self.want_litellm:
            self._start_litellm()
        else:
            self.litellm_missing = "skipped (--no-litellm)"

    def system_children(self, role: Role) -> list[Child]:
        return self.system.of_role(role) if self.system is not None else []

    def _start_portkey(self) -> None:
        reason = ensure_portkey(self.results)
        started = reason or launch_portkey("portkey", self.results)
        if isinstance(started, str):
            self.portkey_missing = started
            log(f"Portkey unavailable: {started}")
            return
        server, url = started
        self.servers.append(server)
        group = Group("portkey", [server])
        self.groups["portkey"] = group
        self.targets.append(Target("portkey", f"{url}/v1", MOCK_MODEL, "x", [group], [group],
                                   headers=provider_headers(f"{self.mock_url}/v1")))
        log(f"Portkey gateway {PORTKEY_VERSION} at {url} (node {node_version()})")

    def _start_litellm(self) -> None:
        reason = ensure_litellm(self.results)
        if reason:
            self.litellm_missing = reason
            log(f"LiteLLM unavailable: {reason}")
            return
        started = self.launch_litellm("litellm", {
            "model_list": [{"model_name": MOCK_MODEL, "litellm_params": {
                "model": f"openai/{MOCK_MODEL}", "api_base": f"{self.mock_url}/v1", "api_key": "x"}}]})
        if isinstance(started, str):
            self.litellm_missing = started
            log(f"LiteLLM unavailable: {started}")
            return
        server, url, master_key = started
        group = Group("litellm", [server])
        self.groups["litellm"] = group
        self.targets.append(Target("litellm", f"{url}/v1", MOCK_MODEL, master_key, [group], [group]))
        log(f"LiteLLM {LITELLM_VERSION} at {url} (--num_workers 2)")

    def launch_litellm(self, name: str, config: dict[str, Any]) -> tuple[Server, str, str] | str:
        """Starts a LiteLLM proxy (two workers, no database) with `config` plus our common
        settings; returns (server, base URL, master key) once it is live, or why it is not."""
        if not (LITELLM_VENV / "bin" / "litellm").exists():
            return self.litellm_missing or "not installed"
        port = free_port()
        master_key = "sk-" + secrets.token_hex(32)  # the proxy refuses to start without one
        path = self.results / f"{name}.yaml"
        path.write_text(yaml.safe_dump({
            **config,
            "litellm_settings": {"telemetry": False, "drop_params": True},
            "general_settings": {"master_key": master_key},
        }, sort_keys=False))
        env = {key: value for key, value in os.environ.items() if not key.startswith(("DATABASE_", "LITELLM_"))}
        env.update({"LITELLM_TELEMETRY": "False", "LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_LOG": "ERROR",
                    "LITELLM_MODE": "PRODUCTION", "PYTHONUNBUFFERED": "1",
                    "PATH": f"{LITELLM_VENV / 'bin'}:{env.get('PATH', '')}"})
        server = Server(name, [str(LITELLM_VENV / "bin" / "litellm"), "--config", str(path), "--host",
                               "127.0.0.1", "--port", str(port), "--num_workers", "2"],
                        self.results, env=env, cwd=self.results)
        self.servers.append(server)
        log(f"starting {name} (LiteLLM's startup takes up to a minute)")
        url = f"http://127.0.0.1:{port}"
        if not wait_http(f"{url}/health/liveliness", server, 240):
            why = f"the proxy did not become ready; log tail:\n{server.tail(8)}"
            server.stop()
            return why
        return server, url, master_key

    def stop(self) -> None:
        for server in reversed(self.servers):
            server.stop()
        if self.system is not None:
            self.system.stop()  # its private Redis too

    # --- mock control -------------------------------------------------------------------------

    def mock_config(self, **settings: float) -> None:
        httpx.post(f"{self.mock_url}/_config", json=settings, timeout=5).raise_for_status()

    def mock_reset(self) -> None:
        httpx.post(f"{self.mock_url}/_reset", timeout=5).raise_for_status()

    def mock_stats(self) -> dict[str, Any]:
        return dict(httpx.get(f"{self.mock_url}/_stats", timeout=5).json())

    def settle(self, limit: float = 180.0) -> float:
        """Waits until the mock has had no new request for 1 s and holds none; returns the wait.

        A gateway that fell behind keeps working on requests whose clients gave up (timed out):
        without this wait that backlog would land on whichever target runs next.
        """
        started = time.monotonic()
        last: tuple[int, int] | None = None
        quiet_since = started
        while time.monotonic() - started < limit:
            stats = self.mock_stats()
            now = (int(stats.get("requests", 0)), int(stats.get("in_flight", 0)))
            if now != last or now[1] > 0:
                quiet_since = time.monotonic()
            elif time.monotonic() - quiet_since >= 1.0:
                break
            last = now
            time.sleep(0.2)  # polling the mock's counters
        waited = time.monotonic() - started
        return max(0.0, waited - 1.0)

    def order(self, round_index: int) -> list[Target]:
        shift = round_index % len(self.targets)
        return self.targets[shift:] + self.targets[:shift]

    def all_groups(self) -> list[Group]:
        return list(self.groups.values())

    # --- k6 -----------------------------------------------------------------------------------

    def run_k6(self, target: Target, tag: str, seconds: float, rate: int | None = None,
           vus: int | None = None) -> dict[str, Any]:
        """One k6 run of bench/k6/chat.js; returns samples, errors and CPU per process group."""
        stem = self.results / f"{tag}-{target.name}"
        env = {**os.environ, "TARGET_URL": target.url, "MODEL": target.model, "KEY": target.key,
               "DURATION": f"{seconds:g}s", "TIMEOUT": self.plan.timeout, "K6_NO_USAGE_REPORT": "true",
               "HEADERS": json.dumps(target.headers)}
        if rate is not None:
            env["RATE"] = str(rate)
        if vus is not None:
            env["VUS"] = str(vus)
        argv = [str(self.k6), "run", "--quiet", "--no-usage-report", "--no-color",
                "--out", f"csv={stem}.csv", "--summary-export", f"{stem}-summary.json", str(BENCH / "k6" / "chat.js")]
        meter = CpuMeter(self.all_groups())
        meter.start()
        started = time.monotonic()
        with open(f"{stem}-k6.log", "wb") as out:
            done = subprocess.run(argv, env=env, stdout=out, stderr=subprocess.STDOUT, timeout=seconds + 120)
        wall = time.monotonic() - started
        cpu = meter.stop()
        if done.returncode not in (0, 99):  # 99: thresholds crossed (none are set)
            log(f"k6 exited with {done.returncode}; see {stem}-k6.log")
        parsed = parse_k6_csv(Path(f"{stem}.csv"))
        parsed.update(cpu=cpu, wall_s=wall, seconds=seconds)
        return parsed


def parse_k6_csv(path: Path) -> dict[str, Any]:
    svc: list[float] = []
    sched: list[float] = []
    start_lag: list[float] = []
    reported: list[float] = []
    errors: Counter[str] = Counter()
    dropped = 0
    sent = 0
    if not path.exists():
        return {"svc": svc, "sched": sched, "errors": {"k6 produced no output": 1}, "sent": 0, "ok": 0}
    with open(path, newline="") as handle:
        for row in csv.DictReader(handle):
            name = row["metric_name"]
            if name == "dropped_iterations":
                dropped += int(float(row["metric_value"]))
            elif name == "start_lag":
                start_lag.append(float(row["metric_value"]))
            elif name == "reported_overhead":
                reported.append(float(row["metric_value"]))
            elif name in ("svc_latency", "sched_latency"):
                tags = dict(part.split("=", 1) for part in row["extra_tags"].split("&") if "=" in part)
                outcome = tags.get("outcome", "?")
                if name == "svc_latency":
                    sent += 1
                    if outcome == "ok":
                        svc.append(float(row["metric_value"]))
                    else:
                        errors[_error_name(outcome, tags.get("err", ""))] += 1
                elif outcome == "ok":
                    sched.append(float(row["metric_value"]))
    if dropped:
        errors["dropped by k6 (no free VU)"] += dropped
    # The scenario starts a moment after the run clock: remove that constant from sched latency.
    offset = min(start_lag) if start_lag else 0.0
    return {"svc": svc, "sched": [value - offset for value in sched], "errors": dict(errors),
            "sent": sent + dropped, "ok": len(svc), "sched_offset_ms": offset, "reported": reported}


def _error_name(outcome: str, detail: str) -> str:
    if outcome.startswith("net_"):
        code = outcome[4:]
        return f"{K6_ERRORS.get(code, 'network error')} (k6 {code}{': ' + detail.strip() if detail else ''})"
    if outcome.startswith("http_"):
        return f"HTTP {outcome[5:]}"
    return {"bad_body": "200 without a completion", "timeout": "timeout"}.get(outcome, outcome)


def wait_quiet(max_wait: float, threshold: float) -> float:
    """Waits until the rest of the machine uses under `threshold` cores over 10 s, at most `max_wait` s.

    Returns the last reading. Nothing of the bench runs yet, so all busy CPU is someone else's.
    """
    deadline = time.monotonic() + max_wait
    while True:
        before = machine_busy_seconds()
        time.sleep(10)  # one measuring window
        busy = (machine_busy_seconds() - before) / 10
        if busy < threshold or time.monotonic() >= deadline:
            return busy
        log(f"the machine is busy ({busy:.2f} cores used by other processes); waiting for it to calm down "
            f"(up to {max(0.0, deadline - time.monotonic()):.0f} s more, --wait-quiet 0 to skip)")



# --- shared by the rows -----------------------------------------------------------------------

def pct(values: list[float]) -> dict[str, float | None]:
    return {"p50": percentile(values, 50), "p90": percentile(values, 90), "p99": percentile(values, 99),
            "n": len(values)}


def merge_errors(into: dict[str, int], more: dict[str, int]) -> None:
    for kind, count in more.items():
        into[kind] = into.get(kind, 0) + count


def cpu_of(target: Target, cpu: dict[str, float]) -> dict[str, float]:
    return {g.name: cpu.get(g.name, 0.0) for g in target.cpu_groups}


def warm_up(bench: Bench) -> None:
    if bench.plan.warmup_seconds <= 0:
        return
    log(f"warm-up: {bench.plan.warmup_seconds:g} s at 50 rps per target (not counted)")
    bench.mock_config(latency_ms=0, tokens_per_second=0)
    for target in bench.targets:
        bench.run_k6(target, "warmup", bench.plan.warmup_seconds, rate=50)
        bench.settle()

