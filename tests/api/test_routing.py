"""Routing picks the account that can start soonest; ties share load by weight."""

from __future__ import annotations

from collections import Counter

from api.routing import AccountState, WeightedRotation, choose, estimate_wait_ms
from shared.config import Account, Limits
from shared.redis.limiter import Dim, LimiterState


def account_state(depth: int = 0, tat_requests: float = 0, tat_tokens: float = 0,
                  blocked_until: float = 0) -> AccountState:
    return AccountState(depth, LimiterState({Dim.REQUESTS: tat_requests, Dim.TOKENS: tat_tokens}, blocked_until))


NOW = 1_000_000.0
IDLE = account_state()


def account(name: str, rpm: int | None = 60, tpm: int | None = None, weight: float = 1.0) -> Account:
    return Account(name=name, provider="mock", base_url="u", limits=Limits(rpm=rpm, tpm=tpm), weight=weight)


def test_idle_accounts_share_load_by_weight() -> None:
    accounts = [account("a", weight=2), account("b", weight=1)]
    rotation = WeightedRotation()
    picks = Counter(accounts[choose(accounts, [IDLE, IDLE], 100, NOW, rotation)].name for _ in range(300))
    assert picks == {"a": 200, "b": 100}


def test_a_blocked_account_is_avoided() -> None:
    accounts = [account("a"), account("b")]
    blocked = account_state(depth=0, tat_requests=0, tat_tokens=0, blocked_until=NOW + 30_000)
    assert all(choose(accounts, [blocked, IDLE], 100, NOW, WeightedRotation()) == 1 for _ in range(10))


def test_deeper_queue_at_the_same_rate_loses_but_a_faster_account_can_win() -> None:
    slow, fast = account("slow", rpm=60), account("fast", rpm=600)
    deep = account_state(depth=10, tat_requests=0, tat_tokens=0, blocked_until=0)
    shallow = account_state(depth=2, tat_requests=0, tat_tokens=0, blocked_until=0)
    assert choose([slow, slow], [deep, shallow], 100, NOW, WeightedRotation()) == 1
    # ten jobs at 600 rpm (1 s) beat two at 60 rpm (2 s)
    assert choose([slow, fast], [shallow, deep], 100, NOW, WeightedRotation()) == 1


def test_token_rate_binds_for_large_jobs() -> None:
    tokens = account("t", rpm=600, tpm=60_000)  # 1 ms per token
    state = account_state(depth=3, tat_requests=0, tat_tokens=NOW + 500, blocked_until=0)
    assert estimate_wait_ms(tokens, state, 2_000, NOW) == 500 + 3 * 2_000


def test_concurrent_decisions_do_not_herd_onto_one_account() -> None:
    """Requests routed at the same moment read the same Redis snapshot; one account looking
    sooner in it (its worker has not claimed yet) must not draw the whole burst."""
    import asyncio
    from collections import Counter as Count

    import fakeredis

    from api.dispatch import Dispatcher
    from shared.config import parse_config

    config = parse_config("""
accounts:
  - {name: a, provider: mock, base_url: u, limits: {rpm: 60}}
  - {name: b, provider: mock, base_url: u, limits: {rpm: 60}}
models: [{name: m, route: [{account: a, model: x}, {account: b, model: x}]}]
""", env={})

    async def burst() -> Count[str]:
        client = fakeredis.FakeAsyncRedis()
        import time

        # a's worker just claimed: a looks one second busier than b in every snapshot
        await client.hset("sluice:{a}:rl", "tat_r", str(time.time() * 1000 + 1000))
        dispatcher = Dispatcher(config, client, hub=None)  # type: ignore[arg-type]
        model = config.model("m")
        assert model is not None
        picks = await asyncio.gather(*[dispatcher.choose_route(model, 100) for _ in range(40)])
        return Count(account for account, _ in picks)

    picks = asyncio.run(burst())
    assert sum(picks.values()) == 40
    assert abs(picks["a"] - picks["b"]) <= 2  # without the in-process count: 0 / 40


def test_an_account_without_a_live_worker_is_avoided_even_when_idle() -> None:
    accounts = [account("dead"), account("busy")]
    dead = AccountState(0, LimiterState({}, 0), alive=False)
    busy = account_state(depth=20)
    assert all(choose(accounts, [dead, busy], 100, NOW, WeightedRotation()) == 1 for _ in range(10))
    # with nothing alive anywhere, the usual estimate decides
    also_dead = AccountState(20, LimiterState({}, 0), alive=False)
    assert choose(accounts, [dead, also_dead], 100, NOW, WeightedRotation()) == 0
