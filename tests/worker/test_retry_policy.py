"""The upstream retry policy: which faults are retried, how long it waits, and when it stops."""

from __future__ import annotations

import time

from hypothesis import given
from hypothesis import strategies as st

from shared.errors import GatewayError
from worker.retry import RetryPolicy

POLICY = RetryPolicy(retries=3, base=0.25, cap=2.0)
FAULT = GatewayError("upstream_unavailable", "503", retryable=True)
FAR = int((time.time() + 3600) * 1000)


@given(st.integers(min_value=0, max_value=30))
def test_backoff_doubles_within_its_cap_and_is_jittered(retry: int) -> None:
    ceiling = min(2.0, 0.25 * 2**retry)
    waits = {POLICY.backoff(retry) for _ in range(20)}
    assert all(ceiling / 2 <= w <= ceiling for w in waits)
    assert len(waits) > 1  # jitter: retries of jobs that failed together spread out


def test_only_retryable_faults_before_anything_streamed_and_within_the_deadline() -> None:
    assert POLICY.next_wait(FAULT, 0, streamed=False, deadline_ms=FAR) is not None
    assert POLICY.next_wait(FAULT, 3, streamed=False, deadline_ms=FAR) is None  # retries used up
    assert POLICY.next_wait(FAULT, 0, streamed=True, deadline_ms=FAR) is None  # the client has some
    rejected = GatewayError("upstream_rejected", "400")
    assert POLICY.next_wait(rejected, 0, streamed=False, deadline_ms=FAR) is None
    past = int((time.time() + 0.05) * 1000)  # the backoff (>= 0.125 s) would end after it
    assert POLICY.next_wait(FAULT, 0, streamed=False, deadline_ms=past) is None
