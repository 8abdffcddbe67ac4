"""An account's limiter state, as the Lua scripts keep it, read through one typed reader.

Contract: the hash `{p}:{acct}:rl` (Keys.account(...).rl), written only by the Lua scripts
(lua/limiter.lua and the scripts that include it). Every value is a decimal string; times are
unix ms on Redis's own clock.

    tat_r, tat_t, tat_i, tat_o   GCRA theoretical arrival time per dimension (absent = idle)
    blocked                      every replica holds back until then (block.lua; absent = never)
    cap_r, cap_t, cap_i, cap_o   the provider's stated per-minute limit (learn.lua; absent = none)

Dimensions: r = requests, t = all tokens, i = input tokens, o = output tokens. The maths here
is limiter.lua's, read-only: a stated cap below the configured rate wins (apply_caps), and a
dimension is free once its TAT is not in the future (tolerance 0, as the worker configures it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline


class Dim(StrEnum):
    REQUESTS = "r"
    TOKENS = "t"
    INPUT = "i"
    OUTPUT = "o"


DIMS = tuple(Dim)
FIELDS = [*(f"tat_{d}" for d in DIMS), "blocked", *(f"cap_{d}" for d in DIMS)]


@dataclass(frozen=True, slots=True)
class LimiterState:
    tat: dict[Dim, float] = field(default_factory=dict)  # absent = idle (0)
    blocked_until: float = 0.0
    caps: dict[Dim, int] = field(default_factory=dict)  # only the dimensions with a stated cap

    @classmethod
    def decode(cls, values: list[bytes | None]) -> LimiterState:
        """From the HMGET of FIELDS, in that order."""
        n = len(DIMS)
        tat = {d: float(v) for d, v in zip(DIMS, values[:n], strict=True) if v}
        caps = {d: int(float(v)) for d, v in zip(DIMS, values[n + 1:], strict=True) if v and float(v) > 0}
        blocked = values[n]
        return cls(tat, float(blocked) if blocked else 0.0, caps)

    def per_minute(self, dim: Dim, configured: int | None) -> int:
        """The rate the scripts enforce: the configured one, or the provider's lower stated cap
        (0 = unlimited)."""
        rate = configured or 0
        cap = self.caps.get(dim, 0)
        if cap > 0 and (rate == 0 or cap < rate):
            return cap
        return rate

    def wait_ms(self, dim: Dim, now_ms: float) -> float:
        """How long until `dim` admits a job (0 = now)."""
        return max(0.0, self.tat.get(dim, 0.0) - now_ms)

    def blocked_ms(self, now_ms: float) -> float:
        return max(0.0, self.blocked_until - now_ms)

    def left(self, dim: Dim, per_minute: int, now_ms: float) -> float | None:
        """Of the next minute's budget, what is not already spent (negative = in debt past it);
        None when the dimension is unlimited."""
        if per_minute <= 0:
            return None
        return per_minute - self.wait_ms(dim, now_ms) * per_minute / 60000


def queue_read(pipe: Pipeline, key: str) -> None:
    """Queues the one HMGET that `LimiterState.decode` reads."""
    pipe.hmget(key, FIELDS)


async def read(client: aioredis.Redis, key: str) -> LimiterState:
    return LimiterState.decode(await client.hmget(key, FIELDS))  # type: ignore[misc]
