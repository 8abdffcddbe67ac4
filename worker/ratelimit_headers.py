"""What providers' rate-limit headers say, turned into two actions:

- hold: the bucket is dry right now (`remaining` 0) -> hold the key back until one more request
  fits: one request interval, or the reset time if sooner. Waiting for the full reset would
  leave the key idle while the provider's bucket is already refilling.
- learn: the provider states its real per-minute limit -> cap the shared limiter at it when it is
  below the configured one (so every replica paces to it), clear the cap when it is not.
"""

from __future__ import annotations

from datetime import datetime

from shared.config import Limits
from shared.protocols.errors_http import parse_duration

# (header dimension, limiter dimension) pairs; the limiter's are r(equests), t(okens), i(nput), o(utput)
_OPENAI_DIMS = (("requests", "r"), ("tokens", "t"))
_ANTHROPIC_DIMS = (("requests", "r"), ("tokens", "t"), ("input-tokens", "i"), ("output-tokens", "o"))


def _int(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return int(float(value))
    except ValueError:
        return None


def _one_slot(limit: int | None, reset_seconds: float, dim: str) -> float:
    if dim == "r" and limit:
        return min(reset_seconds, 60.0 / limit)
    return min(reset_seconds, 1.0)  # tokens: the learned token rate paces the rest


def openai_hold_seconds(headers: dict[str, str]) -> float | None:
    hold = None
    for name, dim in _OPENAI_DIMS:
        if _int(headers.get(f"x-ratelimit-remaining-{name}")) != 0:
            continue
        reset = parse_duration(headers.get(f"x-ratelimit-reset-{name}") or "")
        if reset is None:
            continue
        seconds = _one_slot(_int(headers.get(f"x-ratelimit-limit-{name}")), reset, dim)
        hold = seconds if hold is None else max(hold, seconds)
    return hold


def anthropic_hold_seconds(headers: dict[str, str], now: float) -> float | None:
    hold = None
    for name, dim in _ANTHROPIC_DIMS:
        if _int(headers.get(f"anthropic-ratelimit-{name}-remaining")) != 0:
            continue
        reset_at = headers.get(f"anthropic-ratelimit-{name}-reset")
        try:
            reset = datetime.fromisoformat((reset_at or "").replace("Z", "+00:00")).timestamp() - now
        except ValueError:
            continue
        if reset > 0:
            seconds = _one_slot(_int(headers.get(f"anthropic-ratelimit-{name}-limit")), reset, dim)
            hold = seconds if hold is None else max(hold, seconds)
    return hold


def _caps(stated: dict[str, int | None], configured: Limits) -> dict[str, int]:
    config = {"r": configured.rpm, "t": configured.tpm, "i": configured.input_tpm, "o": configured.output_tpm}
    caps: dict[str, int] = {}
    for dim, limit in stated.items():
        if limit is None or limit <= 0:
            continue
        mine = config[dim]
        caps[dim] = limit if (mine is None or limit < mine) else 0
    return caps


def openai_limit_caps(headers: dict[str, str], configured: Limits) -> dict[str, int]:
    return _caps({dim: _int(headers.get(f"x-ratelimit-limit-{name}")) for name, dim in _OPENAI_DIMS}, configured)


def anthropic_limit_caps(headers: dict[str, str], configured: Limits) -> dict[str, int]:
    return _caps({dim: _int(headers.get(f"anthropic-ratelimit-{name}-limit")) for name, dim in _ANTHROPIC_DIMS},
                 configured)
