"""Scenario 3. Tokens: a TPM-bound account with small and large prompts mixed holds its token rate."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from typing import Any

from bench.limits.cluster import AccountSpec, SystemSpec, running
from bench.limits.load import at, chat, drain, keep_busy, make_client, prompt
from bench.limits.measure import (
    account_counters,
    completed_between,
    failures,
    fmt_counters,
    paced_rate,
    percentile,
)
from bench.limits.result import Ctx, Result
from shared.mock.settings import MockSettings


async def tokens(ctx: Ctx) -> Result:
    tpm, max_tokens = 20_000, 64
    small_chars, large_chars = 200, 12_000  # ~50 and ~3000 tokens by the mock's count
    warm, window = (3.0, 15.0) if ctx.quick else (5.0, 60.0)
    outstanding = 6
    res = Result("tokens", f"TPM as the binding limit ({tpm} tpm), small and large prompts mixed")
    res.config = [
        f"1 account, `limits: {{tpm: {tpm}}}`, no rpm, 1 worker process",
        f"1 mock process, `--output-tokens {max_tokens}`, no limits",
        f"prompts: every 3rd ~{large_chars // 4} tokens ({large_chars} chars), the rest ~{small_chars // 4} "
        f"tokens; max_tokens {max_tokens}; client keeps {outstanding} requests open",
        f"measured over a {window:.0f} s window after {warm:.0f} s warm-up; tokens = prompt + completion "
        "tokens from each answer's usage",
    ]
    spec = SystemSpec(mocks={"mock": MockSettings(output_tokens=max_tokens)},
                      accounts=[AccountSpec("acct", "mock", {"tpm": tpm})])

    def kind(i: int) -> str:
        return "large" if i % 3 == 0 else "small"

    async with running(ctx, "tokens", spec) as cluster, make_client() as http:
        t0 = time.monotonic()

        def stats() -> Awaitable[dict[str, Any]]:
            return cluster.mock_stats(http, "mock")

        s0 = asyncio.create_task(at(t0, warm, stats))
        s1 = asyncio.create_task(at(t0, warm + window, stats))
        tasks = await keep_busy(
            lambda i: chat(http, cluster.base_url, t0, i, kind(i),
                           prompt(i, large_chars if kind(i) == "large" else small_chars), max_tokens),
            outstanding, t0 + warm + window + 0.5, 100_000)
        outcomes = await drain(tasks, 180, t0)
        before, after = await s0, await s1
        status = await cluster.status()
    done = completed_between(outcomes, warm, warm + window)
    paced = paced_rate(done, lambda o: float(o.tokens))
    paced_pct = (paced or 0.0) / tpm * 100
    mock_tokens = (int(after["input_tokens"]) + int(after["output_tokens"])
                   - int(before["input_tokens"]) - int(before["output_tokens"]))
    mock_rate = mock_tokens / window * 60
    large = [o for o in outcomes if o.kind == "large"]
    large_ok = [o for o in large if o.ok]
    small_ok = [o for o in outcomes if o.kind == "small" and o.ok]
    largest = max((o.prompt_tokens for o in large_ok), default=0)
    res.figure("requests sent / ok", f"{len(outcomes)} / {sum(o.ok for o in outcomes)}")
    res.figure("failed", failures(outcomes))
    res.figure("large prompts ok / sent", f"{len(large_ok)} / {len(large)} (largest prompt {largest} tokens, "
                                          f"cost {largest + max_tokens})")
    n_large = sum(o.kind == "large" for o in done)
    res.figure("answers in window (large + small)", f"{len(done)} ({n_large} + {len(done) - n_large})")
    res.figure("admitted tokens/min, paced (answer spacing)",
               f"{paced or 0:.0f} ({paced_pct:.1f} % of {tpm})")
    cut = (largest + max_tokens) / (window / 60)
    res.figure("tokens/min at the mock (counter delta / window)",
               f"{mock_rate:.0f} ({mock_rate / tpm * 100:.1f} %; +-{cut:.0f} "
               "from where the window cuts a large request)")
    res.figure("client latency p50 small / large",
               f"{percentile([o.done - o.sent for o in small_ok], 0.5):.1f} s / "
               f"{percentile([o.done - o.sent for o in large_ok], 0.5):.1f} s")
    res.figure("mock 429s", after["responses_429"])
    res.figure("Sluice counters", fmt_counters(account_counters(status)["acct"]))
    res.check("admitted tokens/min 90-100 % of tpm (+1 % for timestamp jitter)", 90 <= paced_pct <= 101,
              f"{paced_pct:.1f} %")
    res.check("every large request finishes", bool(large) and len(large_ok) == len(large),
              f"{len(large_ok)}/{len(large)}")
    res.check("no failures", all(o.ok for o in outcomes), f"{sum(not o.ok for o in outcomes)} failed")
    res.summary = (f"{paced or 0:.0f} tokens/min = {paced_pct:.1f} % of {tpm} tpm "
                   f"(mock counter {mock_rate / tpm * 100:.1f} %), large {len(large_ok)}/{len(large)} ok")
    res.notes.append("The paced figure divides the tokens of every answer in the window but the last by the "
                     "time from the first answer to the last: the limiter starts job k+1 exactly "
                     "cost(k)/tpm minutes after job k, so this is the admitted rate without the quantization "
                     "of a fixed window (one large request is ~15 % of a minute's budget).")
    if paced_pct < 90:
        res.notes.append("Under 90 %: tokens are reserved at claim time (prompt estimate + max_tokens) and "
                         "refunded at ack; a reservation much larger than real usage, or a claim loop that "
                         "wakes late, leaves budget unused.")
    return res

