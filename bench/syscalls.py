"""`python -m bench.syscalls`: wake-ups and system calls per request, per process.

On a small virtual machine most of a gateway's CPU is the kernel's: a loopback round trip to
Redis costs the Python client about 80 µs of CPU on the 2-vCPU EPYC (most of it system time),
and the bench's `top` shows two thirds of the busy time as `sy`. What a request costs there is
therefore mostly how many times each process is woken and calls into the kernel, and those
counts, unlike CPU time, do not move with a noisy neighbour: they are the before/after figure
for a hot-path change on a machine whose wall clock cannot resolve it.

Starts the bench's own system (mock, private redis-server, Sluice: 1 API and 1 worker process,
production settings) and Portkey's gateway (unless --no-portkey), then for each shape (a whole
answer; a stream of 16 chunks paced as in the stream row, each its own write) sends `--n`
requests one at a time to each gateway (a quiet system: nothing is batched, every request pays
its full count): once untraced, while /proc counts how often each process was woken (voluntary
context switches), and once while `strace -c -f` counts its system calls. Needs strace
(Debian's package of that name).

    .venv/bin/python -m bench.syscalls            # 100 of each
    .venv/bin/python -m bench.syscalls --n 500
"""

from __future__ import annotations

import argparse
import re
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import httpx

from bench.harness import Bench, Target
from bench.log import log
from bench.plan import Plan

ROLES = ("sluice-api", "sluice-worker", "redis")
STREAM_TPS = Plan(rows=["stream"]).stream_tps
# strace -c's table: "% time  seconds  usecs/call  calls  [errors]  syscall"
_ROW = re.compile(r"^\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)(?:\s+\d+)?\s+(\w+)\s*$")


def wakeups(pid: int) -> int:
    """Times the process went to sleep and was woken (voluntary context switches): a busy machine
    preempting it (non-voluntary ones) does not count."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("voluntary_ctxt_switches"):
            return int(line.split()[1])
    return 0


def counted(path: Path) -> dict[str, int]:
    calls: dict[str, int] = {}
    for line in path.read_text().splitlines():
        match = _ROW.match(line)
        if match and match.group(2) != "total":
            calls[match.group(2)] = int(match.group(1))
    return calls


def measure(target: Target, roles: dict[str, list[int]], shape: str, n: int,
            workdir: Path) -> dict[str, tuple[float, float, dict[str, int]]]:
    """Per role: (system calls per request, wake-ups per request, system calls by name)."""
    url = f"{target.url}/chat/completions"
    body: dict[str, object] = {"model": target.model, "max_tokens": 32,
                               "messages": [{"role": "user", "content": "Hello there"}]}
    if shape == "stream":
        body["stream"] = True
    headers = {"authorization": f"Bearer {target.key}", **target.headers}
    with httpx.Client(timeout=30) as client:
        def one() -> None:
            reply = client.post(url, json=body, headers=headers)
            if reply.status_code != 200 or (shape == "stream" and b"[DONE]" not in reply.content):
                raise SystemExit(f"bench.syscalls: a {shape} request to {target.name} failed: {reply.status_code}")

        for _ in range(20):  # warm: connections pooled, scripts loaded
            one()
        # wake-ups first, untraced (strace stops a traced process at every system call)
        before = {role: sum(wakeups(pid) for pid in pids) for role, pids in roles.items()}
        for _ in range(n):
            one()
        after = {role: sum(wakeups(pid) for pid in pids) for role, pids in roles.items()}
        tracers = {}
        for role, pids in roles.items():
            out = workdir / f"{shape}-{role}.txt"
            argv = ["strace", "-c", "-f", "-o", str(out), *(arg for pid in pids for arg in ("-p", str(pid)))]
            tracers[role] = (subprocess.Popen(argv, stderr=subprocess.DEVNULL), out)
        time.sleep(1.0)  # strace attaches asynchronously; the warm system is idle meanwhile
        for _ in range(n):
            one()
        result = {}
        for role, (tracer, out) in tracers.items():
            tracer.send_signal(signal.SIGINT)
            tracer.wait(timeout=30)
            calls = counted(out)
            result[role] = (sum(calls.values()) / n, (after[role] - before[role]) / n, calls)
    return result


def report(label: str, figures: dict[str, tuple[float, float, dict[str, int]]], n: int) -> None:
    print(f"\n{label}, {n} sent one at a time: per request")
    print("| process | system calls | wake-ups | largest |")
    print("|---|---|---|---|")
    for role, (per_request, per_wakeup, calls) in figures.items():
        top = ", ".join(f"{name} {count / n:.2f}" for name, count in sorted(calls.items(), key=lambda kv: -kv[1])[:6])
        print(f"| {role} | {per_request:.2f} | {per_wakeup:.2f} | {top} |")
    if len(figures) > 1:
        print(f"| all | {sum(f[0] for f in figures.values()):.2f} | {sum(f[1] for f in figures.values()):.2f} | |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=100, help="requests of each shape")
    parser.add_argument("--no-portkey", action="store_true", help="leave Portkey's gateway out")
    args = parser.parse_args()
    if shutil.which("strace") is None:
        raise SystemExit("bench.syscalls needs strace (Debian: apt-get install strace)")
    workdir = Path(tempfile.mkdtemp(prefix="sluice-syscalls-"))
    bench = Bench(plan=Plan(rows=["rate"]), results=workdir, k6=Path("/bin/true"), want_litellm=False,
                  want_portkey=not args.no_portkey)
    bench.start()
    try:
        sluice = next(t for t in bench.targets if t.name == "sluice")
        peer = next((t for t in bench.targets if t.name == "portkey"), None)
        for shape in ("whole", "stream"):
            # streams at the stream row's pace (one chunk per token at 50 tokens/s), so each chunk
            # is its own write, as in `python -m bench`
            bench.mock_config(latency_ms=0, tokens_per_second=STREAM_TPS if shape == "stream" else 0)
            label = "whole answers" if shape == "whole" else "16-chunk streams"
            roles = {role: bench.groups[role].pids() for role in ROLES}
            report(f"Sluice, {label}", measure(sluice, roles, shape, args.n, workdir), args.n)
            if peer is not None:
                report(f"Portkey, {label}", measure(peer, {"portkey": bench.groups["portkey"].pids()}, shape,
                                                    args.n, workdir), args.n)
    finally:
        bench.stop()
    log(f"strace tables in {workdir}")


if __name__ == "__main__":
    main()
