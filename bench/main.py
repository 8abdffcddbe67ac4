"""`python -m bench`: run the rows, write results/<time>/ and (full runs) docs/benchmarks.md."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import bench
from bench.harness import Bench, wait_quiet, warm_up
from bench.log import log
from bench.plan import Plan
from bench.portkey import installed_portkey, node_version
from bench.procs import CpuMeter, machine_busy_seconds, own_and_children_seconds
from bench.report import DOCS, limits_section, render
from bench.rows.burst import row_burst
from bench.rows.concurrent import row_concurrent
from bench.rows.max import row_max
from bench.rows.rate import row_rate
from bench.rows.soak import row_soak
from bench.rows.stream import row_stream
from bench.tools import BENCH, LITELLM_VENV, ROOT, ensure_k6, installed_version

ROW_RUNNERS: dict[str, Callable[[Bench], dict[str, Any]]] = {
    "rate": row_rate, "max": row_max, "stream": row_stream, "concurrent": row_concurrent, "burst": row_burst,
}


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

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=bench.__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a few seconds per row, one round (smoke test)")
    parser.add_argument("--soak", action="store_true", help="with --only: add the 10-minute soak")
    parser.add_argument("--no-soak", action="store_true", help="leave the soak out of a full run")
    parser.add_argument("--only", default=None, help="comma-separated rows: rate, max, stream, concurrent (or 1-4)")
    parser.add_argument("--no-concurrent", action="store_true", help="skip the concurrent-streams row")
    parser.add_argument("--concurrent-streams", type=int, default=None, help="streams in row 4 (default 2000)")
    parser.add_argument("--rounds", type=int, default=None, help="interleaved rounds per row (default 2)")
    parser.add_argument("--no-litellm", action="store_true", help="leave LiteLLM out")
    parser.add_argument("--no-portkey", action="store_true", help="leave Portkey's gateway out")
    parser.add_argument("--api-workers", type=int, default=1, help="Sluice API processes (default 1)")
    parser.add_argument("--wait-quiet", type=float, default=None,
                        help="before starting, wait up to this many seconds for other processes to use under "
                             "0.5 cores (default 600 for a full run, 0 with --quick)")
    parser.add_argument("--write-docs", action="store_true",
                        help="write docs/benchmarks.md even with --quick or --only (a full run always does)")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    plan = Plan.from_args(args)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    results_dir = BENCH / "results" / stamp
    results_dir.mkdir(parents=True, exist_ok=True)
    command = "python -m bench" + "".join(f" {a}" for a in (argv if argv is not None else sys.argv[1:]))
    k6 = ensure_k6(results_dir)
    wait = args.wait_quiet if args.wait_quiet is not None else (0.0 if args.quick else 600.0)
    others_before = wait_quiet(wait, 0.5) if wait > 0 else None
    machine = machine_info(k6)
    if others_before is not None:
        machine["others_before"] = f"{others_before:.2f}"
    log(f"results in {results_dir.relative_to(ROOT)}; rows: {', '.join(plan.rows)}{' + soak' if plan.soak else ''}")
    harness = Bench(plan, results_dir, k6, api_workers=args.api_workers, want_litellm=not args.no_litellm,
                    want_portkey=not args.no_portkey)
    rows: dict[str, Any] = {}
    started = time.monotonic()
    noise: dict[str, float] = {}
    try:
        harness.start()
        machine["litellm"] = installed_version(LITELLM_VENV, "litellm") or "not installed"
        machine["portkey"] = (f"{installed_portkey()} (node {node_version()})" if installed_portkey()
                              else "not installed")
        # What else ran on the machine meanwhile: all busy CPU minus ours (servers, k6, clients).
        servers = CpuMeter(harness.all_groups())
        servers.start()
        busy0, ours0, t0 = machine_busy_seconds(), own_and_children_seconds(), time.monotonic()
        warm_up(harness)
        for row in plan.rows:
            rows[row] = ROW_RUNNERS[row](harness)
        if plan.soak:
            rows["soak"] = row_soak(harness)
        wall = time.monotonic() - t0
        busy = machine_busy_seconds() - busy0
        ours = own_and_children_seconds() - ours0 + sum(servers.stop().values())
        noise = {"wall_s": wall, "busy_cores": busy / wall, "ours_cores": ours / wall,
                 "others_cores": max(0.0, busy - ours) / wall}
    finally:
        harness.stop()
    machine["loadavg_after"] = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    results = {"machine": machine, "plan": plan.__dict__, "targets": [t.name for t in harness.targets],
               "litellm_missing": harness.litellm_missing, "portkey_missing": harness.portkey_missing,
               "rows": rows, "command": command, "noise": noise,
               "elapsed_s": time.monotonic() - started}
    (results_dir / "results.json").write_text(json.dumps(results, indent=1, default=str))
    report = render(results, command) + "\n" + limits_section()
    (results_dir / "benchmarks.md").write_text(report)
    full = (not args.quick and not args.only and args.api_workers == 1 and not args.no_litellm
            and not args.no_portkey)
    if full or args.write_docs:
        DOCS.parent.mkdir(exist_ok=True)
        DOCS.write_text(report)
        log(f"wrote {DOCS.relative_to(ROOT)}")
    else:
        log(f"wrote {(results_dir / 'benchmarks.md').relative_to(ROOT)} (docs/benchmarks.md is left as it is "
            "for partial runs; --write-docs overrides)")
    if harness.litellm_missing:
        log(f"LiteLLM is missing from these results: {harness.litellm_missing}")
    if harness.portkey_missing:
        log(f"Portkey is missing from these results: {harness.portkey_missing}")
    print(render(results, command))
    log(f"done in {time.monotonic() - started:.0f} s")

