"""Anthropic's Messages API (base_url is the bare host, as in Anthropic's SDK)."""

from __future__ import annotations

import time

import orjson

from shared.config import Account
from shared.errors import GatewayError
from shared.jobs import Job
from shared.model import ChatResponse
from shared.protocols import anthropic_messages
from worker.providers.base import StreamParser, UpstreamRequest
from worker.ratelimit_headers import anthropic_hold_seconds, anthropic_limit_caps


class AnthropicProvider:
    def __init__(self, account: Account) -> None:
        self.name: str = account.provider
        self._limits = account.limits
        self._url = f"{account.base_url}/v1/messages"
        self._headers = {**anthropic_messages.headers(account.api_key), **account.headers}

    def request(self, job: Job) -> UpstreamRequest:
        # Anthropic requires max_tokens: send what was reserved for the job, so the two agree.
        body = anthropic_messages.build_request(job.request, job.upstream_model,
                                                default_max_tokens=job.output_reserve)
        if job.request.stream:
            body["stream"] = True
        return UpstreamRequest(self._url, self._headers, orjson.dumps(body))

    def parse_response(self, body: bytes) -> ChatResponse:
        return anthropic_messages.parse_response(body)

    def stream_parser(self) -> StreamParser:
        return anthropic_messages.StreamParser()

    def parse_error(self, status: int, body: bytes, headers: dict[str, str]) -> GatewayError:
        return anthropic_messages.parse_error(status, body, headers)

    def hold_seconds(self, headers: dict[str, str]) -> float | None:
        return anthropic_hold_seconds(headers, time.time())

    def limit_caps(self, headers: dict[str, str]) -> dict[str, int]:
        return anthropic_limit_caps(headers, self._limits)
