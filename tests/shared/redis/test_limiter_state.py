"""The limiter reader sees what the Lua scripts keep, and its maths agrees with claim.lua's."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.config import Account, Limits, QueueSettings
from shared.redis import limiter
from shared.redis.client import Role, connect
from shared.redis.keys import AccountKeys, Keys
from shared.redis.limiter import Dim, LimiterState
from shared.redis.scripts import ClaimCode, LimitArgs, Outcome, Scripts

pytestmark = pytest.mark.anyio


def keys() -> AccountKeys:
    return Keys(f"t{uuid.uuid4().hex[:10]}").account("acct")


def limit_args(**kw: int) -> LimitArgs:
    return LimitArgs.of(Account(name="acct", provider="mock", limits=Limits(**kw)))  # type: ignore[arg-type]


def test_an_idle_account_has_its_whole_budget() -> None:
    idle = LimiterState.decode([None] * len(limiter.FIELDS))
    assert idle == LimiterState()
    assert idle.left(Dim.REQUESTS, 60, 1e12) == 60
    assert idle.left(Dim.TOKENS, 0, 1e12) is None  # unlimited
    assert idle.wait_ms(Dim.REQUESTS, 1e12) == 0 and idle.blocked_ms(1e12) == 0


def test_a_stated_cap_wins_only_when_it_is_lower() -> None:
    capped = LimiterState(caps={Dim.REQUESTS: 50})
    assert capped.per_minute(Dim.REQUESTS, 60) == 50
    assert capped.per_minute(Dim.REQUESTS, 40) == 40
    assert capped.per_minute(Dim.REQUESTS, None) == 50  # unlimited in config: the provider's word
    assert capped.per_minute(Dim.TOKENS, 1000) == 1000


def test_debt_past_a_minute_shows_as_negative() -> None:
    now = 1e12
    state = LimiterState(tat={Dim.TOKENS: now + 90_000})  # a large request went into debt
    assert state.left(Dim.TOKENS, 6000, now) == pytest.approx(6000 - 9000)


async def test_the_reader_sees_what_the_scripts_wrote(redis_url: str) -> None:
    client = connect(redis_url, Role.TOOL)
    k = keys()
    scripts = Scripts(client)
    try:
        await scripts.enqueue(k, "j1", b"{}", (100, 50), 0, 10)
        claimed = await scripts.claim(k, limit_args(rpm=60, tpm=60_000), QueueSettings(), 1)
        assert claimed.code is ClaimCode.CLAIMED and len(claimed.claimed) == 1
        await scripts.block(k, 5_000)
        await scripts.learn(k, {"r": 30, "o": 1_000})
        sec, usec = await client.time()
        now = sec * 1000 + usec / 1000
        state = await limiter.read(client, k.rl)
        assert 900 < state.wait_ms(Dim.REQUESTS, now) <= 1000  # one request at 60 rpm: 1 s
        assert 100 < state.wait_ms(Dim.TOKENS, now) <= 150  # 150 tokens at 1,000 a second
        assert 4_900 < state.blocked_ms(now) <= 5_000
        assert state.caps == {Dim.REQUESTS: 30, Dim.OUTPUT: 1_000}
        assert state.per_minute(Dim.REQUESTS, 60) == 30
    finally:
        await client.delete(k.ready, k.inflight, k.jobs, k.meta, k.rl, k.bell, k.dlq, k.workers, k.stats)
        await client.aclose()


costs = st.tuples(st.integers(0, 3_000), st.integers(0, 3_000))


@settings(max_examples=15, deadline=None)
@given(rpm=st.sampled_from([0, 60, 6_000]), tpm=st.sampled_from([0, 60_000, 600_000]),
       jobs=st.lists(costs, min_size=1, max_size=8))
async def test_claim_admits_exactly_when_the_reader_says_nothing_is_waited_for(
        redis_url: str, rpm: int, tpm: int, jobs: list[tuple[int, int]]) -> None:
    client = connect(redis_url, Role.TOOL)
    k = keys()
    scripts = Scripts(client)
    limits = limit_args(rpm=rpm, tpm=tpm, concurrency=100)
    try:
        for n, cost in enumerate(jobs):
            await scripts.enqueue(k, f"j{n}", b"{}", cost, 0, 100)
            sec, usec = await client.time()
            now = sec * 1000 + usec // 1000  # whole ms, as the scripts' clock (now_ms in limiter.lua)
            state = await limiter.read(client, k.rl)
            wait = max(state.wait_ms(Dim.REQUESTS, now) if rpm else 0.0,
                       state.wait_ms(Dim.TOKENS, now) if tpm else 0.0)
            got = await scripts.claim(k, limits, QueueSettings(), 1)
            if wait == 0:
                assert got.code is ClaimCode.CLAIMED and len(got.claimed) == 1
                await scripts.ack(k, limits, got.claimed[0][0], None, Outcome.COMPLETED)
            elif wait > 50:  # far from the edge: the few ms between the two reads cannot flip it
                assert got.code is ClaimCode.LIMITER_WAIT and not got.claimed
                assert wait - 50 <= got.wait_ms <= wait + 1  # the script rounds up
    finally:
        await client.delete(k.ready, k.inflight, k.jobs, k.meta, k.rl, k.bell, k.dlq, k.workers, k.stats)
        await client.aclose()
