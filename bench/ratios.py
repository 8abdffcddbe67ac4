"""The report's comparison with the peers: Sluice ÷ Portkey and Sluice ÷ LiteLLM for every row's
figures, and issue 16's targets (which are ratios to Portkey) met or not."""

from __future__ import annotations

from typing import Any

PEERS = ("portkey", "litellm")


def _added(row: dict[str, Any], name: str, key: str, q: str) -> float | None:
    base, r = row.get("direct"), row.get(name)
    if not base or not r:
        return None
    value, ref = r[key].get(q), base[key].get(q)
    return None if value is None or ref is None else value - ref


def _cpu_ms(r: dict[str, Any] | None) -> float | None:
    if not r or not r.get("ok") or not r.get("cpu_s"):
        return None
    return float(sum(r["cpu_s"].values()) * 1000 / r["ok"])


def _ratio(ours: float | None, theirs: float | None) -> str:
    if ours is None or theirs is None:
        return "-"
    if theirs <= 0:
        return "∞" if ours > 0 else "-"
    return f"{ours / theirs:.2f}"


def _figures(rows: dict[str, Any]) -> list[tuple[str, str, dict[str, float | None]]]:
    """(row, figure, value per target) for every figure a ratio is shown for."""
    out: list[tuple[str, str, dict[str, float | None]]] = []
    names = ("sluice", *PEERS)
    for rate, row in rows.get("rate", {}).items():
        out.append((f"1. {rate} rps", "added p50 ms", {n: _added(row, n, "svc_ms", "p50") for n in names}))
        out.append((f"1. {rate} rps", "added p99 ms", {n: _added(row, n, "svc_ms", "p99") for n in names}))
        out.append((f"1. {rate} rps", "CPU ms/request", {n: _cpu_ms(row.get(n)) for n in names}))
    mx = rows.get("max")
    if mx:
        out.append(("2. max", "requests/s", {n: (mx[n]["rps"] if n in mx else None) for n in names}))
        out.append(("2. max", "CPU ms/request", {n: _cpu_ms(mx.get(n)) for n in names}))
    st = rows.get("stream")
    if st:
        out.append(("3. streams", "TTFT overhead p50 ms", {n: _added(st, n, "ttft_sched_ms", "p50") for n in names}))
        out.append(("3. streams", "TTFT overhead p99 ms", {n: _added(st, n, "ttft_sched_ms", "p99") for n in names}))
        out.append(("3. streams", "CPU ms/stream", {n: _cpu_ms(st.get(n)) for n in names}))
    cc = rows.get("concurrent")
    if cc:
        out.append(("4. concurrent", "RSS peak MiB", {
            n: (sum(cc[n].get("rss_peak", {}).values()) / 2**20 if n in cc else None) for n in names}))
        out.append(("4. concurrent", "streams ok", {n: (cc[n]["ok"] if n in cc else None) for n in names}))
    bu = rows.get("burst")
    if bu:
        out.append(("5. burst", "requests ok", {n: (bu[n]["ok"] if n in bu else None) for n in names}))
    return out


def ratios_table(results: dict[str, Any]) -> list[str]:
    figures = _figures(results.get("rows", {}))
    if not figures:
        return []
    cpu = results.get("machine", {}).get("cpu", "?")
    lines = ["## Sluice beside its peers", "",
             f"Each row's figures for the three gateways, measured in this run on one {cpu} "
             f"({results.get('machine', {}).get('nproc', '?')} cores, shared by the mock, the gateways and the "
             "load generator), and the ratios Sluice ÷ Portkey and Sluice ÷ LiteLLM. Below 1 is better for "
             "latency, CPU and memory; above 1 is better for requests/s and requests ok.", "",
             "| row | figure | Sluice | Portkey | LiteLLM | Sluice ÷ Portkey | Sluice ÷ LiteLLM |",
             "|---|---|---|---|---|---|---|"]

    def fmt(value: float | None) -> str:
        if value is None:
            return "-"
        return f"{value:,.2f}" if abs(value) < 100 and value != int(value) else f"{value:,.0f}"

    for row, figure, v in figures:
        lines.append(f"| {row} | {figure} | {fmt(v['sluice'])} | {fmt(v['portkey'])} | {fmt(v['litellm'])} | "
                     f"{_ratio(v['sluice'], v['portkey'])} | {_ratio(v['sluice'], v['litellm'])} |")
    return [*lines, "", *_targets(results), ""]


def _targets(results: dict[str, Any]) -> list[str]:
    """Issue 16's targets against Portkey, from this run."""
    rows = results.get("rows", {})
    checks: list[tuple[str, str, bool | None]] = []
    mx = rows.get("max", {})
    if "sluice" in mx and "portkey" in mx:
        r = mx["sluice"]["rps"] / mx["portkey"]["rps"] if mx["portkey"]["rps"] else None
        checks.append(("max throughput ≥ 2 x Portkey's", _ratio(mx["sluice"]["rps"], mx["portkey"]["rps"]),
                       None if r is None else r >= 2))
        s, p = _cpu_ms(mx["sluice"]), _cpu_ms(mx["portkey"])
        checks.append(("CPU per non-stream request ≤ 0.5 x Portkey's", _ratio(s, p),
                       None if s is None or p is None else s <= 0.5 * p))
        checks.append(("CPU per non-stream request ≤ 1.0 ms (API + worker + Redis)",
                       "-" if s is None else f"{s:.2f} ms", None if s is None else s <= 1.0))
    rate = rows.get("rate", {}).get("200")
    if rate and "sluice" in rate and "portkey" in rate:
        s, p = _added(rate, "sluice", "svc_ms", "p50"), _added(rate, "portkey", "svc_ms", "p50")
        checks.append(("added p50 @ 200 rps ≤ 0.5 x Portkey's", _ratio(s, p),
                       None if s is None or p is None else s <= 0.5 * p))
        s99, p99 = rate["sluice"]["svc_ms"]["p99"], rate["portkey"]["svc_ms"]["p99"]
        checks.append(("p99 @ 200 rps below Portkey's", f"{s99:.1f} vs {p99:.1f} ms" if s99 and p99 else "-",
                       None if not s99 or not p99 else s99 < p99))
        errors = sum(rate["sluice"]["errors"].values())
        checks.append(("0 errors @ 200 rps", str(errors), errors == 0))
    st = rows.get("stream", {})
    if "sluice" in st and "portkey" in st:
        s, p = _added(st, "sluice", "ttft_sched_ms", "p50"), _added(st, "portkey", "ttft_sched_ms", "p50")
        checks.append(("stream TTFT overhead p50 ≤ 0.25 x Portkey's", _ratio(s, p),
                       None if s is None or p is None else s <= 0.25 * p))
        s, p = _cpu_ms(st["sluice"]), _cpu_ms(st["portkey"])
        checks.append(("CPU per stream ≤ Portkey's", _ratio(s, p), None if s is None or p is None else s <= p))
        sl = st["sluice"]
        checks.append(("every chunk delivered", f"{sl['chunks_received']} / {sl['chunks_expected']}",
                       sl["chunks_received"] == sl["chunks_expected"] and sl["ok"] == sl["sent"]))
    if not checks:
        return []
    lines = ["Issue 16's targets (ratios to Portkey in this run):", "",
             "| target | this run | met |", "|---|---|---|"]
    lines += [f"| {name} | {value} | {'-' if met is None else 'yes' if met else '**no**'} |"
              for name, value, met in checks]
    return lines
