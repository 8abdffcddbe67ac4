"""The arithmetic of a tenant's limits, kept apart from Redis so it can be tested on its own:
budget periods, what a request reserves, when a period resets."""

from __future__ import annotations

import calendar
import time
from dataclasses import dataclass

from shared.config import Budget, Config, Model, Period, Tenant

USAGE_TTL_SECONDS = 100 * 86400  # a tenant's usage hash outlives any month it counts
HOLD_MARGIN_SECONDS = 60.0  # past the queue wait and the upstream timeout, a hold lapses


def allows(config: Config, tenant_name: str, model: str) -> bool:
    """Whether the tenant may use the model (a tenant without an entry, or without `models`, may use
    every one). Live requests (api/tenancy.py) and batch lines (shared/batches/lines.py) ask this."""
    tenant = config.tenant(tenant_name)
    return tenant is None or tenant.models is None or model in tenant.models


def period_id(period: Period, now: float) -> str:
    t = time.gmtime(now)
    return time.strftime("d:%Y%m%d" if period == "day" else "m:%Y%m", t)


def seconds_left(period: Period, now: float) -> float:
    t = time.gmtime(now)
    if period == "day":
        end = calendar.timegm((t.tm_year, t.tm_mon, t.tm_mday, 0, 0, 0)) + 86400
    else:
        year, month = (t.tm_year + 1, 1) if t.tm_mon == 12 else (t.tm_year, t.tm_mon + 1)
        end = calendar.timegm((year, month, 1, 0, 0, 0))
    return max(1.0, end - now)


def cost_of(model: Model, input_tokens: int, output_tokens: int) -> float:
    if model.price is None:
        return 0.0
    return (input_tokens * model.price.input + output_tokens * model.price.output) / 1_000_000


@dataclass(frozen=True, slots=True)
class Admission:
    """One request's arguments to tenant_admit.lua."""

    rpm: int
    tpm: int
    burst_ms: int
    concurrency: int
    tokens: int
    cost: float
    period: str
    token_budget: int
    cost_budget: float
    hold_ms: int

    @classmethod
    def of(cls, tenant: Tenant, model: Model, input_tokens: int, output_tokens: int, hold_seconds: float,
           now: float) -> Admission:
        budget = tenant.budget or Budget()
        rpm = tenant.rpm or 0
        return cls(
            rpm=rpm,
            tpm=tenant.tpm or 0,
            # a minute's worth of requests at once (the request itself is the last of them)
            burst_ms=60_000 - 60_000 // rpm if rpm else 0,
            concurrency=tenant.concurrency or 0,
            tokens=input_tokens + output_tokens,
            cost=cost_of(model, input_tokens, output_tokens),
            period=period_id(budget.period, now),
            token_budget=budget.tokens if budget.tokens is not None else -1,
            cost_budget=budget.cost if budget.cost is not None else -1.0,
            hold_ms=int((hold_seconds + HOLD_MARGIN_SECONDS) * 1000),
        )

    def args(self, request_id: str) -> list[str | int | float]:
        return [request_id, self.rpm, self.tpm, self.burst_ms, self.concurrency, self.tokens,
                repr(self.cost), self.period, self.token_budget, repr(self.cost_budget), self.hold_ms,
                USAGE_TTL_SECONDS]
