"""Slow a key down before the provider says no, from the rate-limit headers of good answers."""

from __future__ import annotations

from datetime import datetime

from shared.protocols.errors_http import parse_duration


def openai_hold_seconds(headers: dict[str, str]) -> float | None:
    """`x-ratelimit-remaining-*` at 0 -> hold the key until the matching `x-ratelimit-reset-*`."""
    hold = None
    for dim in ("requests", "tokens"):
        remaining = headers.get(f"x-ratelimit-remaining-{dim}")
        reset = headers.get(f"x-ratelimit-reset-{dim}")
        if remaining is None or reset is None:
            continue
        try:
            if int(float(remaining)) > 0:
                continue
        except ValueError:
            continue
        seconds = parse_duration(reset)
        if seconds is not None and (hold is None or seconds > hold):
            hold = seconds
    return hold


def anthropic_hold_seconds(headers: dict[str, str], now: float) -> float | None:
    """`anthropic-ratelimit-*-remaining` at 0 -> hold until the RFC 3339 `-reset` time."""
    hold = None
    for dim in ("requests", "tokens", "input-tokens", "output-tokens"):
        remaining = headers.get(f"anthropic-ratelimit-{dim}-remaining")
        reset = headers.get(f"anthropic-ratelimit-{dim}-reset")
        if remaining is None or reset is None:
            continue
        try:
            if int(remaining) > 0:
                continue
            seconds = datetime.fromisoformat(reset.replace("Z", "+00:00")).timestamp() - now
        except ValueError:
            continue
        if seconds > 0 and (hold is None or seconds > hold):
            hold = seconds
    return hold
