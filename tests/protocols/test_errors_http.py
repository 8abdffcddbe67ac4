"""Upstream HTTP failures -> GatewayError, and the retry hints providers send with them."""

from __future__ import annotations

import email.utils
import time

import pytest

from shared.protocols.errors_http import parse_duration, retry_after_from_headers, upstream_error


@pytest.mark.parametrize(("text", "seconds"), [
    ("1s", 1.0), ("6m0s", 360.0), ("120ms", 0.12), ("1h2m3.5s", 3723.5), ("2.5", 2.5), (" 7 ", 7.0),
    ("soon", None), ("", None),
])
def test_parse_duration(text: str, seconds: float | None) -> None:
    parsed = parse_duration(text)
    if seconds is None:
        assert parsed is None
    else:
        assert parsed == pytest.approx(seconds)


@pytest.mark.parametrize(("headers", "seconds"), [
    ({"retry-after-ms": "1500", "retry-after": "9"}, 1.5),  # the precise one wins
    ({"retry-after-ms": "oops", "retry-after": "9"}, 9.0),
    ({"retry-after": "3"}, 3.0),
    ({"retry-after": "-4"}, 0.0),
    ({}, None),
])
def test_retry_after_from_headers(headers: dict[str, str], seconds: float | None) -> None:
    assert retry_after_from_headers(headers) == seconds


def test_retry_after_as_an_http_date() -> None:
    later = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 25 <= (retry_after_from_headers({"retry-after": later}) or 0) <= 31
    past = email.utils.formatdate(time.time() - 30, usegmt=True)
    assert retry_after_from_headers({"retry-after": past}) == 0.0


@pytest.mark.parametrize(("status", "kind", "our_status", "retryable"), [
    (429, "rate_limited", 429, True),
    (401, "upstream_auth", 502, False),
    (403, "upstream_auth", 502, False),
    (408, "upstream_timeout", 504, True),
    (504, "upstream_timeout", 504, True),
    (500, "upstream_unavailable", 502, True),
    (503, "upstream_unavailable", 503, True),
    (529, "upstream_unavailable", 503, True),
    (400, "upstream_rejected", 400, False),
    (404, "upstream_rejected", 400, False),
    (422, "upstream_rejected", 400, False),
    (409, "upstream_rejected", 409, False),
])
def test_upstream_error_mapping(status: int, kind: str, our_status: int, retryable: bool) -> None:
    err = upstream_error(status, "the provider's words", 2.0)
    assert (err.kind, err.status, err.retryable) == (kind, our_status, retryable)


def test_upstream_error_keeps_hints_and_hides_auth_details() -> None:
    limited = upstream_error(429, "slow down", 7.0)
    assert limited.retry_after == 7.0 and "slow down" in limited.message and "429" in limited.message
    refused = upstream_error(401, "Incorrect API key provided: sk-abc...xyz", None)
    assert "sk-" not in refused.message  # a provider may echo part of the key: never pass it on
