"""`python -m bench.profile`: where Sluice's CPU goes, per request or per stream event.

Starts the bench's own system (mock, private redis-server, Sluice: 1 API and 1 worker process,
production settings; no peers), drives one row's load at Sluice alone, and samples the API and
the worker with py-spy meanwhile (`--nonblocking`: the processes are never paused, so the
profile costs them nothing but the sampler's own CPU on the shared cores). Writes the collapsed
stacks (results/<time>/profile-<role>-<pid>.txt, readable by any flame-graph tool) and prints,
per process, the functions with the largest share of samples, inclusive and self, and the CPU
seconds per request of every process from /proc.

    .venv/bin/python -m bench.profile --row stream --seconds 20    # 50 streams/s, 16 chunks each
    .venv/bin/python -m bench.profile --row rate --rate 200 --seconds 20
    .venv/bin/python -m bench.profile --row max --seconds 15       # 64 connections back to back
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import redis

from bench.harness import Bench
from bench.log import log
from bench.plan import Plan
from bench.procs import CpuMeter
from bench.streams import expected_answer, stream_client
from bench.tools import BENCH, ensure_k6


def collapse(path: Path) -> tuple[int, Counter[str], Counter[str]]:
    """Total samples, and samples per function: inclusive (on the stack) and self (on top)."""
    total = 0
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_name(f) for f in stack.split(";") if f and not f.startswith(("process ", "thread "))]
        if not frames:
            continue
        total += count
        for name in set(frames):
            inclusive[name] += count
        own[frames[-1]] += count
    return total, inclusive, own


def _name(frame: str) -> str:
    """`func (path/to/module.py:123)` -> `module.py:func`, so every line of a function adds up."""
    func, _, where = frame.partition(" (")
    file = where.rsplit(":", 1)[0].rstrip(")")
    parts = file.split("/")
    short = "/".join(parts[-2:]) if parts[-1] in ("__init__.py", "client.py", "connection.py") else parts[-1]
    return f"{short}:{func}"


def redis_connections(port: int, pids: dict[str, list[int]]) -> dict[str, dict[int, int]]:
    """Established TCP connections to the Redis port, per role and process (from `ss -tnp`)."""
    try:
        out = subprocess.run(["ss", "-tnpH", "state", "established", f"( dport = :{port} )"],
                             capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    found: Counter[int] = Counter(int(pid) for pid in re.findall(r"pid=(\d+)", out))
    return {role: {pid: found.get(pid, 0) for pid in role_pids} for role, role_pids in pids.items()}


def report(path: Path, role: str, per: int, unit: str, top: int) -> list[str]:
    total, inclusive, own = collapse(path)
    lines = [f"### {role} ({path.name}): {total} samples" + (f", {total / per:.2f} per {unit}" if per else "")]
    if not total:
        return lines
    lines += ["", "| inclusive % | self % | function |", "|---|---|---|"]
    for name, count in inclusive.most_common(top):
        lines.append(f"| {100 * count / total:.1f} | {100 * own.get(name, 0) / total:.1f} | `{name}` |")
    lines += ["", "Largest self time:", "", "| self % | function |", "|---|---|"]
    for name, count in own.most_common(top // 2):
        lines.append(f"| {100 * count / total:.1f} | `{name}` |")
    return [*lines, ""]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--row", choices=("stream", "rate", "max"), default="stream")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--rate", type=float, default=None, help="requests or streams per second (rate, stream)")
    parser.add_argument("--api-workers", type=int, default=1)
    parser.add_argument("--sample-rate", type=int, default=200, help="py-spy samples per second")
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--no-profile", action="store_true", help="CPU per request only, without py-spy")
    args = parser.parse_args(argv)
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not args.no_profile and not Path(spy).exists():
        raise SystemExit("bench.profile: py-spy is needed (pip install -e '.[dev]')")
    plan = Plan(rows=[], warmup_seconds=0)
    results = BENCH / "results" / (time.strftime("%Y%m%d-%H%M%S") + f"-profile-{args.row}")
    results.mkdir(parents=True, exist_ok=True)
    k6 = ensure_k6(results)
    bench = Bench(plan, results, k6, api_workers=args.api_workers, want_litellm=False, want_portkey=False)
    try:
        bench.start()
        target = next(t for t in bench.targets if t.name == "sluice")
        roles = {"api": bench.groups["sluice-api"], "worker": bench.groups["sluice-worker"]}
        # Warm-up: imports, connection pools and the first requests' one-off costs stay out.
        bench.mock_config(latency_ms=0, tokens_per_second=0)
        bench.run_k6(target, "warmup", 3, rate=50)
        bench.settle()
        spies: list[tuple[str, Path, subprocess.Popen[bytes]]] = []
        if not args.no_profile:
            for role, group in roles.items():
                for pid in group.pids():
                    out = results / f"profile-{role}-{pid}.txt"
                    spies.append((role, out, subprocess.Popen(
                        [spy, "record", "--nonblocking", "-r", str(args.sample_rate), "-d", f"{args.seconds + 2:g}",
                         "-f", "raw", "-o", str(out), "-p", str(pid)],
                        stdout=subprocess.DEVNULL, stderr=open(results / f"py-spy-{pid}.log", "wb"))))  # noqa: SIM115
            time.sleep(1.0)  # py-spy attaches before the load starts
        assert bench.redis is not None
        stats = redis.Redis.from_url(bench.redis.url)
        stats.config_resetstat()  # Redis's per-command counts cover the load alone
        meter = CpuMeter(bench.all_groups())
        meter.start()
        summary: dict[str, Any]
        if args.row == "stream":
            bench.mock_config(latency_ms=0, tokens_per_second=plan.stream_tps)
            text, chunks = expected_answer(bench)
            rate = args.rate or plan.stream_rate
            summary = stream_client(bench, target, "profile-stream", [
                "rate", "--rate", f"{rate:g}", "--duration", f"{args.seconds:g}"], text, chunks, 30)
            done, unit, per_event = summary.get("ok", 0), "stream", chunks
        elif args.row == "rate":
            summary = bench.run_k6(target, "profile-rate", args.seconds, rate=int(args.rate or 200))
            done, unit, per_event = summary["ok"], "request", 0
        else:
            summary = bench.run_k6(target, "profile-max", args.seconds, vus=plan.max_vus)
            done, unit, per_event = summary["ok"], "request", 0
        cpu = meter.stop()
        commands: dict[str, Any] = stats.info("commandstats")  # type: ignore[assignment]  # sync client
        channels = [c.decode() for c in stats.pubsub_channels()]  # type: ignore[union-attr]
        numsub = dict(stats.pubsub_numsub(*channels)) if channels else {}  # type: ignore[arg-type]
        stats.connection_pool.disconnect()
        conns = redis_connections(bench.redis.port, {role: group.pids() for role, group in roles.items()})
        for _, _, proc in spies:
            proc.wait(timeout=args.seconds + 60)
        errors = summary.get("errors") or {}
        lines = [f"# Profile: row {args.row}, {args.seconds:g} s, {done} {unit}s ok of {summary.get('sent', '?')}, "
                 f"{args.api_workers} API process(es)" + (f"; errors: {errors}" if errors else ""), "",
                 "CPU ms per " + unit + ": " + ", ".join(
                     f"{name} {1000 * s / done:.3f}" for name, s in cpu.items() if name != "mock" and done)
                 + (f"; total API + worker + Redis {1000 * sum(v for k, v in cpu.items() if k != 'mock') / done:.3f}"
                    if done else ""), ""]
        if done:
            lines += ["Redis commands per " + unit + " (`INFO commandstats`; deterministic, unlike CPU time): "
                      + ", ".join(f"{name.removeprefix('cmdstat_')} {value['calls'] / done:.2f}"
                                  for name, value in sorted(commands.items(), key=lambda kv: -kv[1]['calls'])
                                  if name != "cmdstat_config"), ""]
        lines += ["Redis connections held after the load, per process (`ss`): " + "; ".join(
            f"{role} pid {pid}: {count}" for role, per_pid in conns.items() for pid, count in per_pid.items())
            + f". Pub/sub channels: {len(channels)} (" + ", ".join(
                f"{(k.decode() if isinstance(k, bytes) else k)}: {v} subscriber(s)" for k, v in numsub.items()) + ")",
            ""]
        if per_event:
            lines += [f"Per stream event ({per_event} content chunks a stream): " + ", ".join(
                f"{name} {1000 * s / done / per_event:.3f} ms" for name, s in cpu.items() if name != "mock" and done),
                ""]
        for role, out, _ in spies:
            if out.exists():
                lines += report(out, role, done, unit, args.top)
        text = "\n".join(lines)
        (results / "profile.md").write_text(text)
        print(text)
        log(f"profile in {results}")
    finally:
        bench.stop()


if __name__ == "__main__":
    main()
