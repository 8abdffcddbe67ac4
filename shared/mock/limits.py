"""Rate-limit buckets and traffic counters, one set per mock process, shared by every dialect.

A limit of L per minute is a token bucket holding max(2, L * bucket_seconds / 60) units and
refilled continuously at L/60 per second. A request is charged in full at arrival: 1 request and
(input tokens + max tokens) tokens. A request dearer than the whole bucket is admitted only when
the bucket is full and leaves it in debt, so the long-run rate holds and nothing waits forever.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

from shared.mock.settings import MockSettings


class Bucket:
    __slots__ = ("capacity", "level", "limit", "rate", "stamp")

    def __init__(self, limit: int, bucket_seconds: float, now: float) -> None:
        self.limit = limit
        self.capacity = max(2.0, limit * bucket_seconds / 60)
        self.rate = limit / 60
        self.level = self.capacity
        self.stamp = now

    def refill(self, now: float) -> None:
        self.level = min(self.capacity, self.level + (now - self.stamp) * self.rate)
        self.stamp = now

    def wait_for(self, cost: float) -> float:
        """Seconds until `cost` can be charged (0 when it can be now); call after refill."""
        need = min(cost, self.capacity)
        return 0.0 if self.level >= need else (need - self.level) / self.rate

    def reset_in(self) -> float:
        """Seconds until the bucket is full again."""
        return max(0.0, (self.capacity - self.level) / self.rate)


@dataclass(slots=True)
class LimitState:
    """What one bucket looks like after a decision; dialects render it as headers."""

    limit: int
    remaining: int
    reset: float  # seconds until full


@dataclass(slots=True)
class Admission:
    requests: LimitState | None
    tokens: LimitState | None


class RateLimited(Exception):
    def __init__(self, which: str, retry_after: float, admission: Admission) -> None:
        super().__init__(which)
        self.which = which  # "requests" or "tokens"
        self.retry_after = retry_after
        self.admission = admission


class Limits:
    def __init__(self) -> None:
        self._shape: tuple[int | None, int | None, float] | None = None
        self.requests: Bucket | None = None
        self.tokens: Bucket | None = None

    def _configure(self, settings: MockSettings, now: float) -> None:
        # Settings are edited live; a changed limit keeps the current level (clamped), so lowering
        # rpm mid-test takes effect without handing out a fresh burst.
        self.requests = _rebuild(self.requests, settings.rpm, settings.bucket_seconds, now)
        self.tokens = _rebuild(self.tokens, settings.tpm, settings.bucket_seconds, now)
        self._shape = (settings.rpm, settings.tpm, settings.bucket_seconds)

    def reset(self) -> None:
        self._shape = None
        self.requests = self.tokens = None

    def admit(self, settings: MockSettings, token_cost: int) -> Admission:
        """Charges one request and `token_cost` tokens, or raises RateLimited charging nothing."""
        if settings.rpm is None and settings.tpm is None and self._shape is None:
            return Admission(None, None)
        now = time.monotonic()
        if self._shape != (settings.rpm, settings.tpm, settings.bucket_seconds):
            self._configure(settings, now)
        requests, tokens = self.requests, self.tokens
        wait_requests = wait_tokens = 0.0
        if requests is not None:
            requests.refill(now)
            wait_requests = requests.wait_for(1)
        if tokens is not None:
            tokens.refill(now)
            wait_tokens = tokens.wait_for(token_cost)
        if wait_requests > 0 or wait_tokens > 0:
            which = "requests" if wait_requests >= wait_tokens else "tokens"
            raise RateLimited(which, max(wait_requests, wait_tokens), self._snapshot())
        if requests is not None:
            requests.level -= 1
        if tokens is not None:
            tokens.level -= token_cost
        return self._snapshot()

    def _snapshot(self) -> Admission:
        return Admission(_state(self.requests), _state(self.tokens))


def _rebuild(old: Bucket | None, limit: int | None, bucket_seconds: float, now: float) -> Bucket | None:
    if limit is None:
        return None
    bucket = Bucket(limit, bucket_seconds, now)
    if old is not None:
        old.refill(now)
        bucket.level = min(bucket.capacity, old.level)
    return bucket


def _state(bucket: Bucket | None) -> LimitState | None:
    if bucket is None:
        return None
    return LimitState(bucket.limit, max(0, math.floor(bucket.level)), bucket.reset_in())


def go_duration(seconds: float) -> str:
    """OpenAI's reset headers use Go duration strings: "120ms", "1.5s", "6m0s"."""
    if seconds <= 0:
        return "0s"
    if seconds < 1:
        return f"{max(1, round(seconds * 1000))}ms"
    minutes, rest = divmod(seconds, 60)
    secs = f"{rest:.3f}".rstrip("0").rstrip(".")
    if minutes < 1:
        return f"{secs}s"
    hours, minutes = divmod(int(minutes), 60)
    return (f"{hours}h" if hours else "") + f"{minutes}m{secs}s"


@dataclass(slots=True)
class Stats:
    """Counters for `GET /_stats`; generation requests only, whatever their outcome."""

    requests: int = 0
    responses_429: int = 0
    by_status: dict[int, int] = field(default_factory=dict)
    in_flight: int = 0
    max_in_flight: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    first_request_at: float | None = None
    last_request_at: float | None = None
    tool_results: list[str] = field(default_factory=list)  # each answered turn's tool result (first 500 chars)
    closed_early: int = 0  # answers the client hung up on before they were complete

    def begin(self) -> None:
        now = time.time()
        self.requests += 1
        if self.first_request_at is None:
            self.first_request_at = now
        self.last_request_at = now
        self.in_flight += 1
        if self.in_flight > self.max_in_flight:
            self.max_in_flight = self.in_flight

    def end(self, status: int) -> None:
        self.in_flight -= 1
        self.by_status[status] = self.by_status.get(status, 0) + 1
        if status == 429:
            self.responses_429 += 1

    def reset(self) -> None:
        # Requests still running will call end(); keep in_flight so the count stays right.
        in_flight = self.in_flight
        self.requests = self.responses_429 = self.input_tokens = self.output_tokens = self.closed_early = 0
        self.by_status = {}
        self.tool_results = []
        self.first_request_at = self.last_request_at = None
        self.in_flight = self.max_in_flight = in_flight

    def as_json(self) -> dict[str, object]:
        return {
            "requests": self.requests,
            "responses_429": self.responses_429,
            "by_status": {str(k): v for k, v in sorted(self.by_status.items())},
            "tool_results": self.tool_results[-20:],
            "in_flight": self.in_flight,
            "max_in_flight": self.max_in_flight,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "first_request_at": self.first_request_at,
            "last_request_at": self.last_request_at,
            "closed_early": self.closed_early,
        }
