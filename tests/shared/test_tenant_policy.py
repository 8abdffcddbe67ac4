"""The arithmetic of tenant limits: budget periods (UTC), when they reset, what a request reserves."""

from __future__ import annotations

import calendar

from hypothesis import given
from hypothesis import strategies as st

from shared.config import Budget, Model, Price, RouteTarget, Tenant
from shared.tenants.policy import Admission, cost_of, period_id, seconds_left

MODEL = Model(name="m", route=[RouteTarget("a", "x")], price=Price(input=2.0, output=8.0))


def test_periods_are_utc_days_and_months() -> None:
    t = calendar.timegm((2026, 12, 31, 23, 59, 30))
    assert period_id("day", t) == "d:20261231" and period_id("month", t) == "m:202612"
    assert seconds_left("day", t) == 30 and seconds_left("month", t) == 30
    assert period_id("month", t + 30) == "m:202701"


@given(st.floats(0, 4e9), st.sampled_from(["day", "month"]))
def test_a_period_ends_exactly_when_the_next_begins(now: float, period: str) -> None:
    left = seconds_left(period, now)  # type: ignore[arg-type]
    assert 1 <= left <= 31 * 86400
    if left > 1:
        assert period_id(period, now + left - 0.5) == period_id(period, now)  # type: ignore[arg-type]
        assert period_id(period, now + left) != period_id(period, now)  # type: ignore[arg-type]


def test_a_request_reserves_its_estimate_and_its_price() -> None:
    tenant = Tenant(name="t", rpm=60, budget=Budget(period="day", tokens=1000, cost=1.5))
    admission = Admission.of(tenant, MODEL, 100, 50, hold_seconds=10, now=0)
    assert admission.tokens == 150
    assert admission.cost == cost_of(MODEL, 100, 50) == (100 * 2 + 50 * 8) / 1e6
    assert admission.burst_ms == 59_000  # a minute's worth (60) at once, counting this one
    assert (admission.token_budget, admission.cost_budget, admission.concurrency) == (1000, 1.5, 0)
    unlimited = Admission.of(Tenant(name="u"), Model(name="n", route=[]), 1, 1, 0, 0)
    assert (unlimited.rpm, unlimited.token_budget, unlimited.cost_budget, unlimited.cost) == (0, -1, -1.0, 0.0)
