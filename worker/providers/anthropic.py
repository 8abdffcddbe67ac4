"""Anthropic's Messages API (base_url is the bare host, as in Anthropic's SDK)."""

from __future__ import annotations

import time

from shared.config import Account
from shared.protocols import anthropic_upstream
from worker.providers.base import DialectProvider
from worker.ratelimit_headers import anthropic_hold_seconds, anthropic_limit_caps


class AnthropicProvider(DialectProvider):
    def __init__(self, account: Account) -> None:
        super().__init__(account.provider, anthropic_upstream, f"{account.base_url}/v1/messages",
                         {**anthropic_upstream.headers(account.api_key), **account.headers})
        self._limits = account.limits

    def hold_seconds(self, headers: dict[str, str]) -> float | None:
        return anthropic_hold_seconds(headers, time.time())

    def limit_caps(self, headers: dict[str, str]) -> dict[str, int]:
        return anthropic_limit_caps(headers, self._limits)
