"""Which of a model's accounts can start a job soonest.

Each candidate's wait is estimated from its live limiter state and queue (one pipelined read):
the account is blocked until `blocked`; its request and token buckets are busy until their TATs;
and the jobs ahead of this one drain at the account's request or token rate, whichever binds.
Candidates whose estimates tie (typically: all idle) share the load by smooth weighted round
robin, so `weight: 2` gets twice the traffic of `weight: 1`.
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.config import Account
from shared.redis.limiter import Dim, LimiterState

TIE_MS = 5.0  # estimates closer than this are the same to a client
# An account with no live worker starts nothing: it is chosen only when every candidate is in the
# same state (its queue is then pulled over by the first sibling to come up: worker/rebalance.py).
NO_WORKER_MS = 3_600_000.0


@dataclass(frozen=True, slots=True)
class AccountState:
    depth: int  # jobs queued ahead
    limiter: LimiterState
    alive: bool = True  # some worker of the account heartbeated recently


def estimate_wait_ms(account: Account, state: AccountState, cost_tokens: int, now_ms: float) -> float:
    limits = account.limits
    request_ms = 60000 / limits.rpm if limits.rpm else 0.0
    token_ms = 60000 / limits.tpm if limits.tpm else 0.0
    lim = state.limiter
    busy = max(lim.blocked_ms(now_ms), lim.wait_ms(Dim.REQUESTS, now_ms), lim.wait_ms(Dim.TOKENS, now_ms))
    # jobs ahead are assumed to cost about what this one does
    per_job = max(request_ms, token_ms * cost_tokens)
    return busy + state.depth * per_job + (0.0 if state.alive else NO_WORKER_MS)


class WeightedRotation:
    """Smooth weighted round robin (each pick adds weights, the leader pays the total)."""

    def __init__(self) -> None:
        self._current: dict[str, float] = {}

    def pick(self, candidates: list[tuple[str, float]]) -> str:
        total = sum(weight for _, weight in candidates)
        best_name, best_value = candidates[0][0], float("-inf")
        for name, weight in candidates:
            value = self._current.get(name, 0.0) + weight
            self._current[name] = value
            if value > best_value:
                best_name, best_value = name, value
        self._current[best_name] -= total
        return best_name


def choose(accounts: list[Account], states: list[AccountState], cost_tokens: int, now_ms: float,
           rotation: WeightedRotation) -> int:
    """Index of the account to use."""
    waits = [estimate_wait_ms(a, s, cost_tokens, now_ms) for a, s in zip(accounts, states, strict=True)]
    soonest = min(waits)
    tied = [i for i, w in enumerate(waits) if w - soonest < TIE_MS]
    if len(tied) == 1:
        return tied[0]
    name = rotation.pick([(accounts[i].name, accounts[i].weight) for i in tied])
    return next(i for i in tied if accounts[i].name == name)
