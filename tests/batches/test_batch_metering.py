"""Batch lines against their tenant's budgets (worker/batcher/metering.py), through real processes,
real Redis and the official SDKs: a batch runs only what its budget has room for and the rest
expires into the error file naming the budget; batches and live traffic together cannot
overspend; a model the tenant may not use is refused at submission; a SIGKILLed coordinator
leaks no reservation (its successor settles them), and a hold nobody settles lapses."""

from __future__ import annotations

import asyncio
import signal
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import anthropic
import httpx
import openai
import orjson
import pytest
import redis
from google import genai
from google.genai import errors, types

from shared.protocols import anthropic_messages
from shared.protocols.openai_chat import parse_request
from shared.redis.scripts import source
from shared.tenants.policy import period_id
from shared.tokens import estimate_input_tokens
from tests.batches.helpers import chat_line, jsonl, openai_client, results, wait_for_status
from tests.conftest import SluiceSystem, two_account_model, wait_until

ADMIN = "metering-admin-token-0123456789"
LINE = chat_line("x")["body"]
ESTIMATE = estimate_input_tokens(parse_request(orjson.dumps(LINE))) + LINE["max_tokens"]
ROOM = 6  # lines the budget of tenant "tester" has room for, at their estimate
PRICE = {"input": 10.0, "output": 30.0}  # per million tokens
ANTHROPIC_PARAMS = {"model": "test-model", "max_tokens": 8, "messages": [{"role": "user", "content": "hello"}]}
ANTHROPIC_INPUT = estimate_input_tokens(anthropic_messages.parse_request(orjson.dumps(ANTHROPIC_PARAMS)))
LINE_COST = (ANTHROPIC_INPUT * PRICE["input"] + 8 * PRICE["output"]) / 1e6  # what one line reserves
KEYS = {"mixed": "sk-meter-mixed", "narrow": "sk-meter-narrow", "roomy": "sk-meter-roomy",
        "priced": "sk-meter-priced"}
TENANTS = [
    {"name": "tester", "budget": {"period": "day", "tokens": ROOM * ESTIMATE}},
    {"name": "mixed", "budget": {"period": "day", "tokens": ROOM * ESTIMATE}},
    {"name": "narrow", "models": ["other-model"]},
    {"name": "roomy", "budget": {"period": "day", "tokens": 10_000_000}},
    {"name": "priced", "budget": {"period": "day", "cost": ROOM * LINE_COST}},
]


def start(make_system: Callable[..., SluiceSystem], monkeypatch: pytest.MonkeyPatch, rpm: int | None = None,
          **batches: Any) -> SluiceSystem:
    monkeypatch.setenv("SLUICE_ADMIN_TOKEN", ADMIN)
    accounts, models = two_account_model(rpm=rpm)
    models[0]["price"] = PRICE
    models.append({"name": "other-model", "route": [{"account": "acct-a", "model": "mock-small"}]})
    extra = {"client_keys": [{"name": "tester", "key": "sk-test-client"},
                             *({"name": n, "key": k} for n, k in KEYS.items())], "tenants": TENANTS}
    return make_system(accounts=accounts, models=models, batchers=1, batches=batches, extra=extra)


def submit(api: openai.OpenAI, n: int, prefix: str = "c", model: str = "test-model") -> Any:
    lines = [chat_line(f"{prefix}{i}", model=model) for i in range(n)]
    uploaded = api.files.create(file=("in.jsonl", jsonl(lines)), purpose="batch")
    return api.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h")


def usage(system: SluiceSystem, tenant: str) -> dict[str, float]:
    raw = system.redis.hgetall(f"{system.prefix}:{{tenant:{tenant}}}:usage")
    period = period_id("day", time.time())
    return {k.decode().rpartition(":")[2]: float(v) for k, v in raw.items()  # type: ignore[union-attr]
            if k.decode().rpartition(":")[0] == period}


def holds(system: SluiceSystem, tenant: str) -> tuple[int, int]:
    """(batch lines held, reservations of any kind) of the tenant."""
    base = f"{system.prefix}:{{tenant:{tenant}}}"
    return int(system.redis.zcard(f"{base}:bheld")), int(system.redis.hlen(f"{base}:cost"))  # type: ignore[arg-type]


def used_tokens(lines: list[dict[str, Any]]) -> int:
    return sum(r["response"]["body"]["usage"]["total_tokens"] for r in lines)


def test_a_batch_runs_only_what_its_budget_has_room_for_and_the_rest_expires_naming_it(
        make_system: Callable[..., SluiceSystem], monkeypatch: pytest.MonkeyPatch) -> None:
    system = start(make_system, monkeypatch, completion_window_seconds=15)
    api = openai_client(system)
    n = 3 * ROOM
    batch = submit(api, n)
    done = wait_for_status(api, batch.id, ("expired", "completed"), 90)
    assert done.status == "expired"  # the budget ran out before the lines did
    out, err = results(api, done.output_file_id), results(api, done.error_file_id)
    assert Counter(r["custom_id"] for r in out + err) == Counter(f"c{i}" for i in range(n)), "lost or twice"
    budget = ROOM * ESTIMATE
    # lines settle for what they used (at most their estimate), so at least ROOM ran; what ran used
    # no more than the budget, within one line's estimate
    assert ROOM <= len(out) < n
    assert used_tokens(out) <= budget + ESTIMATE
    assert all(r["response"]["status_code"] == 200 for r in out)
    for r in err:  # waited for budget until the window ended, and says so
        assert r["response"] is None and r["error"]["code"] == "insufficient_quota", r
        assert "budget" in r["error"]["message"]
    counts = done.request_counts
    assert (counts.total, counts.completed, counts.failed) == (n, len(out), len(err))
    # every hold settled with what its line used; all of it is the batch's share
    spent = usage(system, "tester")
    assert spent["t"] == spent["bt"] == used_tokens(out) <= budget
    assert holds(system, "tester") == (0, 0)
    # the admin API shows it
    report = httpx.get(f"{system.base_url}/admin/tenants/tester", headers={"authorization": f"Bearer {ADMIN}"},
                       timeout=10).json()
    today = report["periods"][period_id("day", time.time())]
    assert today["batch_tokens"] == today["tokens"] == used_tokens(out)
    assert today["batch_requests"] >= len(out) and report["batch_lines_in_flight"] == 0


def test_a_cost_budget_in_anthropics_terms_and_a_line_over_the_whole_budget(
        make_system: Callable[..., SluiceSystem], monkeypatch: pytest.MonkeyPatch) -> None:
    system = start(make_system, monkeypatch, completion_window_seconds=15)
    api = anthropic.Anthropic(base_url=system.base_url, api_key=KEYS["priced"], max_retries=0)
    n = 3 * ROOM
    huge = {"custom_id": "huge", "params": {**ANTHROPIC_PARAMS, "max_tokens": 100_000}}  # ~3.0 reserved
    batch = api.messages.batches.create(requests=[huge, *({"custom_id": f"m{i}", "params": ANTHROPIC_PARAMS}
                                                          for i in range(n))])  # type: ignore[arg-type]

    def waiting() -> bool:  # the admin API says why the batch is not moving
        listed = httpx.get(f"{system.base_url}/admin/batches", params={"tenant": "priced"},
                           headers={"authorization": f"Bearer {ADMIN}"}, timeout=10).json()
        return bool(listed[0]["budget_wait"])

    wait_until(waiting, 30, "the batch to wait for its budget")
    seen: dict[str, Any] = {}

    def ended() -> bool:
        seen["b"] = api.messages.batches.retrieve(batch.id)
        return seen["b"].processing_status == "ended"

    wait_until(ended, 90, "the message batch to end")
    got = {r.custom_id: r.result for r in api.messages.batches.results(batch.id)}
    assert sorted(got) == sorted(["huge", *(f"m{i}" for i in range(n))])
    # the line that could never fit failed at once, in Anthropic's own budget error
    assert got["huge"].type == "errored" and got["huge"].error.error.type == "billing_error"  # type: ignore[union-attr]
    ran = [r for r in got.values() if r.type == "succeeded"]
    assert ROOM <= len(ran) < n
    assert {r.type for r in got.values()} == {"errored", "succeeded", "expired"}
    cost = sum((r.message.usage.input_tokens * PRICE["input"] + r.message.usage.output_tokens * PRICE["output"]) / 1e6
               for r in ran)  # type: ignore[union-attr]
    assert cost <= ROOM * LINE_COST + LINE_COST
    spent = usage(system, "priced")
    assert spent["c"] == pytest.approx(cost) and spent["bc"] == pytest.approx(cost)
    assert holds(system, "priced") == (0, 0)
    counts = seen["b"].request_counts
    assert (counts.succeeded, counts.errored, counts.expired) == (len(ran), 1, n - len(ran))


def test_gemini_lines_that_waited_for_budget_expire_as_resource_exhausted(
        make_system: Callable[..., SluiceSystem], monkeypatch: pytest.MonkeyPatch) -> None:
    system = start(make_system, monkeypatch, completion_window_seconds=15)
    api = genai.Client(api_key="sk-test-client", http_options=types.HttpOptions(base_url=system.base_url))
    n = 3 * ROOM
    src = [{"contents": [{"role": "user", "parts": [{"text": f"hello {i}"}]}], "config": {"max_output_tokens": 8}}
           for i in range(n)]
    job = api.batches.create(model="test-model", src=src)  # type: ignore[arg-type]
    assert job.name
    seen: dict[str, Any] = {}

    def finished() -> bool:
        seen["job"] = api.batches.get(name=job.name)  # type: ignore[arg-type]
        return bool(seen["job"].done)

    wait_until(finished, 90, "the batch job to finish")
    responses = seen["job"].dest.inlined_responses
    assert len(responses) == n
    ran = [r for r in responses if r.error is None]
    waited = [r for r in responses if r.error is not None]
    assert ROOM <= len(ran) < n
    assert all(r.error.code == 429 and "budget" in (r.error.message or "") for r in waited)
    spent = usage(system, "tester")
    assert spent["t"] == spent["bt"] <= ROOM * ESTIMATE + ESTIMATE
    assert holds(system, "tester") == (0, 0)


def test_batches_and_live_requests_together_cannot_overspend(make_system: Callable[..., SluiceSystem],
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    system = start(make_system, monkeypatch, completion_window_seconds=15)
    api = openai_client(system, KEYS["mixed"])
    batches = [submit(api, 2 * ROOM, prefix=f"b{k}-") for k in range(2)]

    async def live() -> list[Any]:
        client = openai.AsyncOpenAI(base_url=f"{system.base_url}/v1", api_key=KEYS["mixed"], max_retries=0)
        try:
            return await asyncio.gather(*(client.chat.completions.create(**LINE) for _ in range(2 * ROOM)),
                                        return_exceptions=True)
        finally:
            await client.close()

    answers = asyncio.run(live())
    answered = [a for a in answers if not isinstance(a, BaseException)]
    refused = [a for a in answers if isinstance(a, openai.RateLimitError)]
    assert len(answered) + len(refused) == len(answers), [a for a in answers if isinstance(a, BaseException)][:2]
    assert all(a.code == "insufficient_quota" for a in refused)
    ran = 0
    for batch in batches:
        done = wait_for_status(api, batch.id, ("expired", "completed"), 90)
        out, err = results(api, done.output_file_id), results(api, done.error_file_id)
        assert len(out) + len(err) == 2 * ROOM
        ran += used_tokens(out)
    live_used = sum(a.usage.total_tokens for a in answered)
    budget = ROOM * ESTIMATE
    assert ran + live_used <= budget + ESTIMATE
    spent = usage(system, "mixed")
    assert spent["t"] == ran + live_used and spent["bt"] == ran
    assert holds(system, "mixed") == (0, 0)


def test_a_model_the_tenant_may_not_use_is_refused_at_submission(make_system: Callable[..., SluiceSystem],
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    system = start(make_system, monkeypatch)
    api = openai_client(system, KEYS["narrow"])
    lines = [chat_line("ok", model="other-model"), chat_line("no", model="test-model")]
    uploaded = api.files.create(file=("in.jsonl", jsonl(lines)), purpose="batch")
    batch = api.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h")
    failed = wait_for_status(api, batch.id, ("failed", "completed"), 30)
    assert failed.status == "failed"
    assert [(e.line, e.code, e.param) for e in failed.errors.data] == [(2, "model_not_found", "body.model")]
    gemini = genai.Client(api_key=KEYS["narrow"], http_options=types.HttpOptions(base_url=system.base_url))
    request = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}], "config": {"max_output_tokens": 8}}
    with pytest.raises(errors.ClientError) as info:
        gemini.batches.create(model="test-model", src=[request])
    assert info.value.code in (400, 404) and "test-model" in str(info.value.message)
    allowed = gemini.batches.create(model="other-model", src=[request])
    assert allowed.name


def test_a_sigkilled_coordinator_leaks_no_reservation(make_system: Callable[..., SluiceSystem],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    system = start(make_system, monkeypatch, rpm=240, lease_seconds=1.0)
    api = openai_client(system, KEYS["roomy"])
    n = 60
    batch = submit(api, n)
    wait_until(lambda: (api.batches.retrieve(batch.id).request_counts.completed or 0) >= 10, 60, "10 lines done")
    assert holds(system, "roomy")[0] > 0  # lines in flight hold their reservations
    for proc in system.batchers:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    system.start_batcher()  # its successor takes the batch over when the lease lapses
    done = wait_for_status(api, batch.id, ("completed",), 90)
    out = results(api, done.output_file_id)
    assert sorted(r["custom_id"] for r in out) == sorted(f"c{i}" for i in range(n))
    # every line's hold was settled, by whichever coordinator collected it, with what it used
    assert holds(system, "roomy") == (0, 0)
    spent = usage(system, "roomy")
    assert spent["t"] == spent["bt"] == used_tokens(out)


def test_a_batch_hold_nobody_settles_lapses_with_its_reservation_spent(redis_url: str) -> None:
    """The script side of crash safety: a line's hold carries a deadline (the batch's window plus
    an upstream timeout); past it, the next admission of the tenant's batch lines reaps it, as
    tenant_admit.lua reaps a live request whose API process died, and what it reserved stays spent.
    Admission is idempotent per line id, settling counts once."""
    client = redis.Redis.from_url(redis_url)
    admit = client.register_script(source("tenant_admit"))
    settle = client.register_script(source("tenant_settle"))
    base = f"lapse{time.time_ns()}:{{tenant:t}}"
    keys = [f"{base}:rl", f"{base}:bheld", f"{base}:cost", f"{base}:usage"]
    period = period_id("day", time.time())

    def spent() -> tuple[int, int]:
        usage = client.hgetall(keys[3])
        return int(usage[f"{period}:t".encode()]), int(usage[f"{period}:bt".encode()])

    def batch_admit(hold_ms: int, *lines: tuple[str, int]) -> list[int]:
        args: list[Any] = ["", 0, 0, 0, 0, 0, "0", period, 100, "-1.0", hold_ms, 3600, "b"]
        for line_id, tokens in lines:
            args += [line_id, tokens, "0.0"]
        return [int(x) for x in admit(keys=keys, args=args)]

    assert batch_admit(60_000, ("b.0", 40), ("b.1", 40), ("b.2", 40)) == [3, 2]  # room for two of three
    assert batch_admit(60_000, ("b.0", 40)) == [0, 1]  # fed again while held: not charged twice
    assert spent() == (80, 80)
    assert settle(keys=keys, args=["b.1", 10, "0.0", 0]) == 1  # used 10 of 40: 30 back
    assert spent() == (50, 50)
    assert batch_admit(0, ("b.3", 30)) == [0, 1]  # a hold whose deadline is now: lapsed at once
    assert batch_admit(60_000, ("b.4", 10)) == [0, 1]  # reaps b.3 first, then holds b.4
    assert sorted(client.zrange(keys[1], 0, -1)) == [b"b.0", b"b.4"]
    assert sorted(client.hkeys(keys[2])) == [b"b.0", b"b.4"]
    assert spent() == (90, 90)  # what the lapsed hold reserved stays spent
    assert settle(keys=keys, args=["b.3", 5, "0.0", 0]) == 0  # settling a lapsed hold changes nothing
    assert settle(keys=keys, args=["b.0", 20, "0.0", 0, "b.4", 10, "0.0", 0]) == 2
    assert settle(keys=keys, args=["b.0", 20, "0.0", 0]) == 0  # nor does settling one twice
    assert spent() == (70, 70)
    client.delete(*keys)


def test_a_round_larger_than_one_command_takes_is_reserved_and_settled_whole(redis_url: str) -> None:
    """The scripts move ids a chunk (1000) at a time: a round of 2,500 lines is admitted up to the
    budget in line order, and settled in one call, exactly as line by line would."""
    client = redis.Redis.from_url(redis_url)
    admit = client.register_script(source("tenant_admit"))
    settle = client.register_script(source("tenant_settle"))
    base = f"chunks{time.time_ns()}:{{tenant:t}}"
    keys = [f"{base}:rl", f"{base}:bheld", f"{base}:cost", f"{base}:usage"]
    period = period_id("day", time.time())
    args: list[Any] = ["", 0, 0, 0, 0, 0, "0", period, 2_200 * 10, "-1.0", 60_000, 3600, "b"]
    for i in range(2_500):
        args += [f"b.{i}", 10, "0.001"]
    assert [int(x) for x in admit(keys=keys, args=args)] == [3, 2_200]  # line 2,200 is the first with no room
    assert client.zcard(keys[1]) == client.hlen(keys[2]) == 2_200
    assert client.zrange(keys[1], 0, 0) == [b"b.0"] and client.hexists(keys[2], "b.2199")
    assert not client.hexists(keys[2], "b.2200")
    settled = []
    for i in range(2_500):  # the lines past the budget were never held: settling them is a no-op
        settled += [f"b.{i}", 4, "0.0004", 0]
    assert settle(keys=keys, args=settled) == 2_200
    usage = {k.decode(): float(v) for k, v in client.hgetall(keys[3]).items()}
    assert usage[f"{period}:t"] == usage[f"{period}:bt"] == 2_200 * 4
    assert usage[f"{period}:n"] == usage[f"{period}:bn"] == 2_200
    assert usage[f"{period}:c"] == pytest.approx(2_200 * 0.0004)
    assert client.zcard(keys[1]) == client.hlen(keys[2]) == 0
    client.delete(*keys)
