"""Google's Gemini API (generateContent; base_url is the bare host, as in the genai SDK)."""

from __future__ import annotations

from shared.config import Account
from shared.jobs import Job
from shared.protocols import gemini_upstream
from worker.providers.base import DialectProvider, UpstreamRequest


class GeminiProvider(DialectProvider):
    def __init__(self, account: Account) -> None:
        super().__init__(account.provider, gemini_upstream, account.base_url,
                         {**gemini_upstream.headers(account.api_key), **account.headers})

    def request(self, job: Job) -> UpstreamRequest:
        # The model and the streaming choice are in the URL, not the body.
        url = self.url + gemini_upstream.path(job.upstream_model, job.request.stream)
        return UpstreamRequest(url, self.headers, self.body(job))

    def hold_seconds(self, headers: dict[str, str]) -> float | None:
        return None  # Gemini sends no rate-limit headers; its 429 body carries RetryInfo

    def limit_caps(self, headers: dict[str, str]) -> dict[str, int]:
        return {}
