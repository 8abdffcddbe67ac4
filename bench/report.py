"""Renders one bench run's results (results.json) as docs/benchmarks.md: the targets of issue 5
at a glance, then a table per row with the method and the machine."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.limits.doc import SECTION_HEADER as LIMITS_HEADER
from bench.ratios import ratios_table
from bench.rows.burst import PATIENCE_S

DOCS = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"


def ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.2f}" if value < 10 else f"{value:.1f}" if value < 100 else f"{value:.0f}"


def added(value: float | None, base: float | None) -> str:
    if value is None or base is None:
        return "-"
    return f"{value - base:+.2f}" if abs(value - base) < 10 else f"{value - base:+.1f}"


def errors_text(errors: dict[str, int], sent: int) -> str:
    if not errors:
        return "0"
    parts = ", ".join(f"{kind}: {count}" for kind, count in sorted(errors.items(), key=lambda kv: -kv[1]))
    total = sum(errors.values())
    return f"{total} ({100 * total / sent:.1f}%): {parts}" if sent else parts


def cpu_per_request(cpu: dict[str, float], ok: int) -> str:
    if not cpu or not ok:
        return "-"
    total = sum(cpu.values()) * 1000 / ok
    detail = " + ".join(f"{name.removeprefix('sluice-')} {seconds * 1000 / ok:.2f}" for name, seconds in cpu.items())
    return f"{total:.2f}" + (f" ({detail})" if len(cpu) > 1 else "")


def drain_text(seconds: float | None) -> str:
    return "0" if not seconds or seconds < 0.5 else f"{seconds:.0f}"


def reported_text(stats: dict[str, float | None] | None) -> str:
    if not stats or not stats.get("n"):
        return ""
    return f"{ms(stats['p50'])} / {ms(stats['p99'])}"


def mib(value: int | None) -> str:
    return "-" if not value else f"{value / 1024 / 1024:.0f} MiB"


def targets_table(results: dict[str, Any]) -> list[str]:
    """Issue 5's targets, each with what this run measured and whether it is met."""
    rows = results.get("rows", {})
    table: list[tuple[str, str, str, bool | None]] = []  # (target, goal, measured, met)

    def sub(value: float | None, base: float | None) -> float | None:
        return None if value is None or base is None else value - base

    rate = rows.get("rate", {}).get("200") or rows.get("rate", {}).get(200)
    if rate and "sluice" in rate:
        sl, base = rate["sluice"], rate["direct"]
        p50 = sub(sl["svc_ms"]["p50"], base["svc_ms"]["p50"])
        p99 = sub(sl["svc_ms"]["p99"], base["svc_ms"]["p99"])
        errors = sum(sl["errors"].values())
        table += [("non-stream @ 200 rps: added p50", "≤ 3 ms", f"{p50:+.2f} ms" if p50 is not None else "-",
                   p50 is not None and p50 <= 3),
                  ("non-stream @ 200 rps: added p99", "≤ 15 ms", f"{p99:+.2f} ms" if p99 is not None else "-",
                   p99 is not None and p99 <= 15),
                  ("non-stream @ 200 rps: errors", "0", f"{errors} of {sl['sent']}", errors == 0)]
    mx = rows.get("max", {}).get("sluice")
    if mx:
        cpu = sum(mx["cpu_s"].values()) * 1000 / mx["ok"] if mx["ok"] else None
        table += [("max throughput, 64 connections", "≥ 1,000 rps", f"{mx['rps']:,.0f} rps", mx["rps"] >= 1000),
                  ("CPU per request (API + worker + Redis)", "≤ 1.5 ms",
                   f"{cpu:.2f} ms" if cpu is not None else "-", cpu is not None and cpu <= 1.5)]
    st = rows.get("stream", {})
    if "sluice" in st:
        sl, base = st["sluice"], st["direct"]
        ttft = sub(sl["ttft_sched_ms"]["p50"], base["ttft_sched_ms"]["p50"])
        table += [("streams @ 50/s: TTFT overhead p50", "≤ 3 ms", f"{ttft:+.2f} ms" if ttft is not None else "-",
                   ttft is not None and ttft <= 3),
                  ("streams: every chunk delivered", "all",
                   f"{sl['chunks_received']:,} / {sl['chunks_expected']:,}, {sl['ok']} / {sl['sent']} streams ok",
                   sl["chunks_received"] == sl["chunks_expected"] and sl["ok"] == sl["sent"])]
    cc = rows.get("concurrent", {}).get("sluice")
    if cc:
        api = cc.get("rss_peak", {}).get("sluice-api", 0)
        errors = sum(cc["errors"].values())
        table.append((f"{cc['sent']:,} open streams, one API process", "RSS < 500 MB, no errors",
                      f"API peak {mib(api)}, {cc['ok']} / {cc['sent']} ok", api < 500 * 2**20 and errors == 0))
    soak = rows.get("soak")
    if soak:
        mem = soak["memory"]
        steady = all(m.get("steady") for m in mem.values())
        growth = ", ".join(f"{name.removeprefix('sluice-')} {m['growth'] / 2**20:+.1f} MiB"
                           for name, m in mem.items() if "growth" in m)
        errors = sum(soak["errors"].values()) + sum((soak["streams"].get("errors") or {}).values())
        table.append((f"no memory growth over a {soak['seconds']:g} s soak", "steady, no errors",
                      f"first → last minute: {growth}; {errors} errors", steady and errors == 0))
    else:
        table.append(("no memory growth over a 10-minute soak", "steady", "not run (`--soak`)", None))
    bu = rows.get("burst", {}).get("sluice")
    if bu:
        table.append((f"burst: {bu['sent']} requests, 2 keys x 60 rpm", f"{bu['sent']}/{bu['sent']} ok",
                      f"{bu['ok']}/{bu['sent']} ok, provider 429s {bu['mock_429']}", bu["ok"] == bu["sent"]))
    if not table:
        return []
    lines = ["## Targets (issue 5) at a glance", "", "From this run; the rows below hold the detail.", "",
             "| target | goal | Sluice | met |", "|---|---|---|---|"]
    for name, goal, measured, met in table:
        lines.append(f"| {name} | {goal} | {measured} | {'-' if met is None else 'yes' if met else '**no**'} |")
    return [*lines, ""]


def render(results: dict[str, Any], command: str) -> str:
    machine = results["machine"]
    plan = results["plan"]
    names = results["targets"]
    lines = [
        "# Benchmarks",
        "",
        "Every figure on this page comes from one command, run from the repository root:",
        "",
        "```",
        command,
        "```",
        "",
        "It starts the built-in mock provider, a private redis-server, Sluice (1 API process, 1 worker "
        "process, production settings), Portkey's gateway (the npm package `@portkey-ai/gateway`, pinned, "
        "installed into bench/.portkey/, one Node process, routed to the mock by its per-request headers), "
        "LiteLLM's proxy (its own venv, `--num_workers 2`, no database) "
        "and drives four targets with the same load: **direct** (the mock itself, the baseline), "
        "**sluice**, **portkey** and **litellm**. Everything runs on one machine over 127.0.0.1, load generator "
        "included, so the absolute numbers are those of a small shared box: read the *added* columns "
        "(target minus direct), which is what a gateway costs. Targets take turns within each row "
        f"({plan['rounds']} round(s), the order rotating each round) so that background noise hits them alike.",
        "",
        *targets_table(results),
        *ratios_table(results),
        "## Machine",
        "",
        f"- Date: {machine['date']}; commit {machine['commit']}",
        f"- CPU: {machine['cpu']}, nproc = {machine['nproc']}; memory {machine['memory']}; "
        f"kernel {machine['kernel']}; load average before the run {machine['loadavg']}, "
        f"after {machine.get('loadavg_after', '?')}"
        + (f"; other processes used {machine['others_before']} cores in the 10 s before the start"
           if "others_before" in machine else ""),
        f"- Python {machine['python']}; {machine['k6']}; {machine['redis']}; LiteLLM {machine['litellm']}; "
        f"Portkey gateway {machine.get('portkey', 'not run')}",
    ]
    noise = results.get("noise") or {}
    if noise:
        lines.append(
            f"- Machine CPU while the rows ran ({noise['wall_s']:.0f} s): {noise['busy_cores']:.2f} of "
            f"{machine['nproc']} cores busy on average, of which {noise['ours_cores']:.2f} by the bench "
            f"(servers, k6, clients) and {noise['others_cores']:.2f} by other processes on the machine.")
    lines += [
        "",
        "## Method",
        "",
        "- Mock provider: `sluice mock-upstream` (16 output tokens per answer). Zero delay for rows 1-3 "
        "(row 3 paces stream chunks, see below); 1.5 s latency for row 4, set through its `/_config` endpoint.",
        "- Sluice: one model routed to one mock account, no rpm/tpm limits, concurrency 2048, finished "
        "records kept 60 s (`queue.result_ttl_seconds`, default 900); Redis is a private `redis-server` "
        "(no persistence) started by the bench.",
        f"- Open-loop rows use k6's `constant-arrival-rate` executor (`bench/k6/chat.js`, timeout "
        f"{plan['timeout']}). k6's own `http_req_duration` leaves out time a request waited inside k6, so "
        "the script also records latency from each request's *scheduled* send time "
        "(test start + iteration index / rate): columns marked *sched*.",
        "- *Self-reported overhead* is what the gateway says it added, from its own response header "
        "(Sluice `x-sluice-overhead-ms`, LiteLLM `x-litellm-overhead-duration-ms`), next to what we measure.",
        "- *Busy after*: seconds the gateway went on calling the mock once the load had stopped, working "
        "off requests whose clients had already given up. Each run waits for the mock to be idle before "
        "the next one starts, so one target's backlog never lands on another.",
        "- Latency percentiles are over successful requests; errors are listed by kind, including "
        "requests k6 dropped for want of a free VU.",
        "- CPU per request: utime + stime from `/proc/<pid>/stat` before and after each run, summed over "
        "the gateway's processes (Sluice: API + worker + Redis; LiteLLM: its master and workers), divided "
        "by successful requests. The mock's and the load generator's CPU are not included. Portkey: its "
        "one Node process.",
        "",
    ]
    if results.get("litellm_missing"):
        lines += [f"**LiteLLM is missing from this run:** {results['litellm_missing']}", ""]
    if results.get("portkey_missing"):
        lines += [f"**Portkey is missing from this run:** {results['portkey_missing']}", ""]

    rate = results.get("rows", {}).get("rate")
    if rate:
        lines += ["## 1. Non-streaming, constant rate (open loop)", "",
                  f"{plan['rate_seconds']:g} s per target and rate, zero-delay mock. Milliseconds.", "",
                  "| rate | target | ok / sent | p50 | p90 | p99 | added p50 | added p99 | sched p50 | sched p99 "
                  "| added sched p99 | self-reported overhead p50 / p99 | CPU ms/req | errors | busy after (s) |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for rate_name, per_target in rate.items():
            base = per_target.get("direct", {})
            for name in names:
                r = per_target.get(name)
                if not r:
                    continue
                svc, sched = r["svc_ms"], r["sched_ms"]
                first = name == "direct"
                lines.append(
                    f"| {rate_name} rps | {name} | {r['ok']} / {r['sent']} | {ms(svc['p50'])} | {ms(svc['p90'])} | "
                    f"{ms(svc['p99'])} | {'' if first else added(svc['p50'], base['svc_ms']['p50'])} | "
                    f"{'' if first else added(svc['p99'], base['svc_ms']['p99'])} | {ms(sched['p50'])} | "
                    f"{ms(sched['p99'])} | {'' if first else added(sched['p99'], base['sched_ms']['p99'])} | "
                    f"{reported_text(r.get('reported_overhead_ms'))} | "
                    f"{cpu_per_request(r['cpu_s'], r['ok'])} | {errors_text(r['errors'], r['sent'])} | "
                    f"{drain_text(r.get('drain_s'))} |")
        lines.append("")

    mx = results.get("rows", {}).get("max")
    if mx:
        lines += ["## 2. Maximum throughput (closed loop)", "",
                  f"{plan['max_vus']} connections sending back to back for {plan['max_seconds']:g} s per target, "
                  "zero-delay mock. The mock runs on the same two cores, so direct shows the mock's own ceiling; "
                  "the CPU column is what each request cost the gateway.", "",
                  "| target | requests/s | p50 ms | p99 ms | CPU ms/req | errors | busy after (s) |",
                  "|---|---|---|---|---|---|---|"]
        for name in names:
            r = mx.get(name)
            if not r:
                continue
            cpu = r["cpu_s"] if name != "direct" else {"mock": r.get("mock_cpu_s", 0.0)}
            cpu_text = cpu_per_request(cpu, r["ok"]) + (" (the mock itself)" if name == "direct" else "")
            lines.append(f"| {name} | {r['rps']:.0f} | {ms(r['svc_ms']['p50'])} | {ms(r['svc_ms']['p99'])} | "
                         f"{cpu_text} | {errors_text(r['errors'], r['sent'])} | {drain_text(r.get('drain_s'))} |")
        lines.append("")

    st = results.get("rows", {}).get("stream")
    if st:
        base = st.get("direct", {})
        lines += ["## 3. Streams, constant rate (open loop)", "",
                  f"{plan['stream_rate']:g} streams/s for {plan['stream_seconds']:g} s per target; the mock sends "
                  f"{st['expected_chunks']} content chunks at {st['tokens_per_second']:g} tokens/s. TTFT = first "
                  "non-empty content delta, read by `bench/stream_client.py` (plain asyncio streams, keep-alive) "
                  "as bytes arrive, timed from the scheduled send. A stream counts as ok only when it delivers "
                  "exactly the upstream's text and ends with a finish reason and `[DONE]`. Milliseconds.", "",
                  "| target | ok / sent | TTFT p50 | TTFT p99 | TTFT overhead p50 | TTFT overhead p99 | total p50 "
                  "| total p99 | content chunks received / sent by mock | CPU ms/stream | errors | busy after (s) |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for name in names:
            r = st.get(name)
            if not r:
                continue
            first = name == "direct"
            tt, tot = r["ttft_sched_ms"], r["total_sched_ms"]
            btt = base.get("ttft_sched_ms", {})
            lines.append(
                f"| {name} | {r['ok']} / {r['sent']} | {ms(tt['p50'])} | {ms(tt['p99'])} | "
                f"{'' if first else added(tt['p50'], btt.get('p50'))} | "
                f"{'' if first else added(tt['p99'], btt.get('p99'))} | {ms(tot['p50'])} | {ms(tot['p99'])} | "
                f"{r['chunks_received']} / {r['chunks_expected']} | {cpu_per_request(r['cpu_s'], r['ok'])} | "
                f"{errors_text(r['errors'], r['sent'])} | {drain_text(r.get('drain_s'))} |")
        lines += ["", "Sluice coalesces deltas that arrive within `queue.stream_coalesce_ms` (15 ms) of each "
                  "other after the first token; at one token per 20 ms each token stays its own chunk.", ""]

    cc = results.get("rows", {}).get("concurrent")
    if cc:
        lines += ["## 4. Concurrent open streams", "",
                  f"{cc['count']} streams opened within {plan['conc_ramp']:g} s on one API process and held: the "
                  f"mock waits {cc['latency_ms'] / 1000:g} s before the first byte, then sends "
                  + ("the whole answer at once" if not cc["tokens_per_second"]
                     else f"{cc['tokens_per_second']:g} tokens/s")
                  + ". *In flight at mock* is the mock's own peak count of requests held at once (how many "
                  "streams the gateway really had open upstream); *total* is from each stream's send to its "
                  "`[DONE]`. RSS is sampled every 100 ms.", "",
                  "| target | ok / sent | in flight at mock (peak) | total p50 ms | total p99 ms | RSS before "
                  "| RSS peak | errors | busy after (s) |", "|---|---|---|---|---|---|---|---|---|"]
        for name in names:
            r = cc.get(name)
            if not r:
                continue
            before = ", ".join(f"{g.removeprefix('sluice-')} {mib(v)}" for g, v in r.get("rss_before", {}).items())
            peak = ", ".join(f"{g.removeprefix('sluice-')} {mib(v)}" for g, v in r.get("rss_peak", {}).items())
            lines.append(f"| {name} | {r['ok']} / {r['sent']} | {r.get('mock_max_in_flight')} | "
                         f"{ms(r['total_ms']['p50'])} | {ms(r['total_ms']['p99'])} | {before} | {peak} | "
                         f"{errors_text(r['errors'], r['sent'])} | {drain_text(r.get('drain_s'))} |")
        lines += ["", "For direct the RSS is the mock's; LiteLLM's is its master plus two workers.", ""]

    bu = results.get("rows", {}).get("burst")
    if bu:
        ideal = bu["requests"] / (bu["keys"] * bu["rpm"]) * 60
        lines += ["## 5. Burst", "",
                  f"{bu['requests']} requests sent at once for one model served by {bu['keys']} provider keys, each "
                  f"allowed {bu['rpm']} requests a minute (two mocks, `--rpm {bu['rpm']}`: a bucket of "
                  f"{bu['rpm'] // 6} requests refilled one a second, reset between targets). Every request may "
                  f"wait up to {PATIENCE_S / 60:g} minutes. *direct*: the client spreads the burst over both keys "
                  "itself. *litellm*: both keys as deployments with `rpm` set and `usage-based-routing-v2` "
                  "(its rate-limit-aware routing, counters shared in Redis), in a proxy of its own. *portkey*: "
                  "both keys as targets of a `loadbalance` config with `retry` on 429 (5 attempts, its most). "
                  "*sluice*: "
                  "both keys as accounts with `limits: {rpm: 60}`, a worker process each. At the keys' limits "
                  f"the whole burst takes {ideal:.0f} s; *wall* is from the send to the last successful answer.",
                  "", "| target | ok / sent | errors (what the client got) | wall s | latency p50 s "
                  "| provider answered 200 / 429 |", "|---|---|---|---|---|---|"]
        for name in ("direct", "portkey", "litellm", "sluice"):
            r = bu.get(name)
            if not r:
                if bu.get(f"{name}_missing"):
                    lines.append(f"| {name} | not run: {bu[f'{name}_missing']} | | | | |")
                continue
            wall = f"{r['wall_s']:.1f}" if r.get("wall_s") is not None else "-"
            p50 = f"{r['latency_p50_s']:.1f}" if r.get("latency_p50_s") is not None else "-"
            lines.append(f"| {name} | {r['ok']} / {r['sent']} | {errors_text(r['errors'], r['sent'])} | {wall} | "
                         f"{p50} | {r['mock_200']} / {r['mock_429']} |")
        lines += ["", "`python -m bench.limits` (below) runs the same burst with more detail, and the other rate-limit "
                  "scenarios.", ""]
    soak = results.get("rows", {}).get("soak")
    if soak:
        st = soak["streams"]
        lines += ["## Soak", "",
                  f"Sluice alone for {soak['seconds']:g} s under mixed load: {soak['rate']} non-stream "
                  f"requests/s (k6, constant arrival rate) and, at the same time, {soak['stream_rate']:g} "
                  "streams/s (`bench/stream_client.py`), zero-delay mock. Memory is sampled every 5 s: RSS of "
                  "the API and worker processes and of redis-server, and Redis's own `used_memory`. Finished "
                  "records stay in Redis for `queue.result_ttl_seconds`, set to 60 s in the bench config so "
                  "that the steady state (rate x TTL x record size) is reached within the run; the default is "
                  "900 s. The trend is read after "
                  f"{soak['warmup_s']:g} s of warm-up: *first* and *last* are the medians of the first and the "
                  "last minute after it; *steady* means the last minute is within 3 % (or 2 MiB) of the first.",
                  "",
                  "| load | ok / sent | p50 ms | p99 ms | sched p99 ms | errors | CPU ms/req |",
                  "|---|---|---|---|---|---|---|",
                  f"| non-stream {soak['rate']}/s | {soak['ok']} / {soak['sent']} | {ms(soak['svc_ms']['p50'])} | "
                  f"{ms(soak['svc_ms']['p99'])} | {ms(soak['sched_ms']['p99'])} | "
                  f"{errors_text(soak['errors'], soak['sent'])} | "
                  f"{cpu_per_request(soak['cpu_s'], soak['ok'] + (st.get('ok') or 0))} (both loads) |",
                  f"| streams {soak['stream_rate']:g}/s | {st.get('ok')} / {st.get('sent')} (chunks "
                  f"{st.get('chunks_received')} / {st.get('chunks_expected')}) | TTFT "
                  f"{ms((st.get('ttft_sched_ms') or {}).get('p50'))} | TTFT "
                  f"{ms((st.get('ttft_sched_ms') or {}).get('p99'))} | | "
                  f"{errors_text(st.get('errors') or {}, st.get('sent') or 0)} | |",
                  "",
                  "| memory | first minute | last minute | growth | slope after warm-up | peak | steady |",
                  "|---|---|---|---|---|---|---|"]
        for name, m in soak["memory"].items():
            if "start" not in m:
                lines.append(f"| {name} | too few samples ({m.get('samples', 0)}) | | | | | |")
                continue
            lines.append(f"| {name} | {mib(m['start'])} | {mib(m['end'])} | {m['growth'] / 2**20:+.1f} MiB | "
                         f"{m['slope_mib_per_min']:+.2f} MiB/min | {mib(m['peak'])} | "
                         f"{'yes' if m['steady'] else 'no'} |")
        lines.append("")
    else:
        lines += ["## Soak", "", "Not part of this run: `python -m bench --soak` adds a 10-minute mixed-load run "
                  "against Sluice with a memory trend per process.", ""]

    return "\n".join(lines)


def limits_section() -> str:
    """The colleague's section at the end of docs/benchmarks.md, kept as it is."""
    if DOCS.exists():
        text = DOCS.read_text()
        at = text.find(LIMITS_HEADER)
        if at >= 0:
            return text[at:].rstrip() + "\n"
    return f"{LIMITS_HEADER}\n\nTo be filled by `python -m bench.limits`.\n"
