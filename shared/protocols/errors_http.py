"""Upstream HTTP failures -> GatewayError, and the retry hints providers send with them."""

from __future__ import annotations

import email.utils
import re
import time

from shared.errors import GatewayError

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(value: str) -> float | None:
    """Go-style durations as OpenAI sends them ('1s', '6m0s', '120ms'), or plain seconds."""
    value = value.strip()
    try:
        return float(value)
    except ValueError:
        pass
    parts = _DURATION.findall(value)
    if not parts:
        return None
    return sum(float(n) * _UNIT_SECONDS[unit] for n, unit in parts)


def retry_after_from_headers(headers: dict[str, str]) -> float | None:
    """Seconds to wait: `retry-after-ms` first, then `retry-after` (seconds or an HTTP date)."""
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        seconds = float(value)
        return max(0.0, seconds) if seconds < float("inf") else None
    except ValueError:
        pass
    try:  # an HTTP date; anything else a provider sends there is no hint at all
        parsed = email.utils.parsedate_to_datetime(value)
    except (ValueError, TypeError, IndexError, OverflowError):
        return None
    return max(0.0, parsed.timestamp() - time.time())


def upstream_error(status: int, message: str, retry_after: float | None) -> GatewayError:
    text = f"upstream answered {status}: {message}"
    if status == 429:
        return GatewayError("rate_limited", text, status=429, retry_after=retry_after, retryable=True)
    if status in (401, 403):
        return GatewayError("upstream_auth", "the upstream provider refused this account's credentials",
                            status=502)
    if status in (408, 504):
        return GatewayError("upstream_timeout", text, status=504, retryable=True)
    if status >= 500:
        return GatewayError("upstream_unavailable", text, status=503 if status != 500 else 502,
                            retry_after=retry_after, retryable=True)
    return GatewayError("upstream_rejected", text, status=400 if status in (400, 404, 413, 422) else status)
