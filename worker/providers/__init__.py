"""Provider adapters: only the vendor quirks (URL, headers, rate-limit hints); conversion lives
in shared/protocols and I/O in worker/upstream.py."""

from __future__ import annotations

from shared.config import Account
from worker.providers.base import Provider
from worker.providers.mistral import MistralProvider
from worker.providers.openai import OpenAIProvider


def provider_for(account: Account) -> Provider:
    if account.provider in ("openai", "openai-compatible", "mock", "deepseek"):
        return OpenAIProvider(account)
    if account.provider == "mistral":
        return MistralProvider(account)
    raise ValueError(f"provider {account.provider!r} has no adapter yet")
