"""Provider adapters: only the vendor quirks (URL, headers, rate-limit hints); conversion lives
in shared/protocols and I/O in worker/upstream.py."""

from __future__ import annotations

from shared.config import Account
from shared.protocols import mistral
from worker.providers.anthropic import AnthropicProvider
from worker.providers.base import Provider
from worker.providers.gemini import GeminiProvider
from worker.providers.openai import OpenAIProvider


def provider_for(account: Account) -> Provider:
    if account.provider == "anthropic":
        return AnthropicProvider(account)
    if account.provider == "gemini":
        return GeminiProvider(account)
    if account.provider == "mistral":
        return OpenAIProvider(account, mistral)  # OpenAI-shaped, with Mistral's strict body
    # openai, openai-compatible (vLLM, Ollama, llama.cpp, LM Studio), deepseek, mock
    return OpenAIProvider(account)
