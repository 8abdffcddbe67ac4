"""OpenAI and every server that speaks its Chat Completions dialect (vLLM, Ollama, llama.cpp,
LM Studio, DeepSeek, the built-in mock)."""

from __future__ import annotations

import orjson

from shared.config import Account
from shared.errors import GatewayError
from shared.jobs import Job
from shared.model import ChatResponse
from shared.protocols import openai_chat
from worker.providers.base import StreamParser, UpstreamRequest
from worker.ratelimit_headers import openai_hold_seconds, openai_limit_caps


class OpenAIProvider:
    def __init__(self, account: Account) -> None:
        self.name: str = account.provider
        self._limits = account.limits
        self._url = f"{account.base_url}/chat/completions"
        self._headers = {"content-type": "application/json", **account.headers}
        if account.api_key:
            self._headers["authorization"] = f"Bearer {account.api_key}"
        # OpenAI's own API rejects max_tokens on reasoning models; compatible servers want it.
        self._max_tokens_field = "max_completion_tokens" if account.provider == "openai" else "max_tokens"

    def request(self, job: Job) -> UpstreamRequest:
        body = openai_chat.build_request(job.request, job.upstream_model, max_tokens_field=self._max_tokens_field)
        return UpstreamRequest(self._url, self._headers, orjson.dumps(body))

    def parse_response(self, body: bytes) -> ChatResponse:
        return openai_chat.parse_response(body)

    def stream_parser(self) -> StreamParser:
        return openai_chat.StreamParser()

    def parse_error(self, status: int, body: bytes, headers: dict[str, str]) -> GatewayError:
        return openai_chat.parse_error(status, body, headers)

    def hold_seconds(self, headers: dict[str, str]) -> float | None:
        return openai_hold_seconds(headers)

    def limit_caps(self, headers: dict[str, str]) -> dict[str, int]:
        return openai_limit_caps(headers, self._limits)
