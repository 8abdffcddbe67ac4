"""Google's Gemini API (generateContent; base_url is the bare host, as in the genai SDK)."""

from __future__ import annotations

import orjson

from shared.config import Account
from shared.errors import GatewayError
from shared.jobs import Job
from shared.model import ChatResponse
from shared.protocols import gemini
from worker.providers.base import StreamParser, UpstreamRequest


class GeminiProvider:
    def __init__(self, account: Account) -> None:
        self.name: str = account.provider
        self._base = account.base_url
        self._headers = {**gemini.headers(account.api_key), **account.headers}

    def request(self, job: Job) -> UpstreamRequest:
        body = gemini.build_request(job.request, job.upstream_model)
        url = self._base + gemini.path(job.upstream_model, job.request.stream)
        return UpstreamRequest(url, self._headers, orjson.dumps(body))

    def parse_response(self, body: bytes) -> ChatResponse:
        return gemini.parse_response(body)

    def stream_parser(self) -> StreamParser:
        return gemini.StreamParser()

    def parse_error(self, status: int, body: bytes, headers: dict[str, str]) -> GatewayError:
        return gemini.parse_error(status, body, headers)

    def hold_seconds(self, headers: dict[str, str]) -> float | None:
        return None  # Gemini sends no rate-limit headers; its 429 body carries RetryInfo

    def limit_caps(self, headers: dict[str, str]) -> dict[str, int]:
        return {}
