"""Reading providers' rate-limit headers: hold for one slot, learn real limits."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from shared.config import Limits
from worker.ratelimit_headers import (
    anthropic_hold_seconds,
    anthropic_limit_caps,
    openai_hold_seconds,
    openai_limit_caps,
)


def test_openai_dry_bucket_holds_for_one_request_not_the_full_reset() -> None:
    headers = {"x-ratelimit-limit-requests": "60", "x-ratelimit-remaining-requests": "0",
               "x-ratelimit-reset-requests": "9.5s"}
    assert openai_hold_seconds(headers) == 1.0
    headers["x-ratelimit-reset-requests"] = "250ms"
    assert openai_hold_seconds(headers) == 0.25
    assert openai_hold_seconds({**headers, "x-ratelimit-remaining-requests": "3"}) is None


def test_openai_limits_cap_only_when_lower_than_config() -> None:
    headers = {"x-ratelimit-limit-requests": "60", "x-ratelimit-limit-tokens": "900000"}
    assert openai_limit_caps(headers, Limits(rpm=120, tpm=100_000)) == {"r": 60, "t": 0}
    assert openai_limit_caps(headers, Limits()) == {"r": 60, "t": 900_000}


def test_anthropic_headers() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    reset = (now + timedelta(seconds=30)).isoformat().replace("+00:00", "Z")
    headers = {"anthropic-ratelimit-requests-limit": "50", "anthropic-ratelimit-requests-remaining": "0",
               "anthropic-ratelimit-requests-reset": reset, "anthropic-ratelimit-output-tokens-limit": "8000"}
    assert anthropic_hold_seconds(headers, now.timestamp()) == 60 / 50
    assert anthropic_limit_caps(headers, Limits(rpm=100, output_tpm=10_000)) == {"r": 50, "o": 8000}
