"""OpenAI and every server that speaks its Chat Completions dialect (vLLM, Ollama, llama.cpp,
LM Studio, DeepSeek, the built-in mock)."""

from __future__ import annotations

import orjson

from shared.config import Account
from shared.jobs import Job
from shared.protocols import openai_chat_upstream
from shared.protocols.common import refuse_documents, refuse_images
from shared.protocols.contracts import UpstreamDialect
from worker.providers.base import DialectProvider
from worker.ratelimit_headers import openai_hold_seconds, openai_limit_caps


class OpenAIProvider(DialectProvider):
    def __init__(self, account: Account, dialect: UpstreamDialect = openai_chat_upstream) -> None:
        headers = {"content-type": "application/json", **account.headers}
        if account.api_key:
            headers["authorization"] = f"Bearer {account.api_key}"
        super().__init__(account.provider, dialect, f"{account.base_url}/chat/completions", headers)
        self._limits = account.limits
        # OpenAI's own API rejects max_tokens on reasoning models; compatible servers want it.
        self._completion_tokens = account.provider == "openai"
        # DeepSeek's API takes text parts only: a file or image_url part is its own 400
        # ("unknown variant `image_url`, expected `text`"), so refuse both in the client's protocol.
        self._text_only = account.provider == "deepseek"

    def body(self, job: Job) -> bytes:
        if self._text_only:
            refuse_documents(job.request, "DeepSeek")
            refuse_images(job.request, "DeepSeek")
        body = self.dialect.build_request(job.request, job.upstream_model, job.output_reserve)
        if self._completion_tokens and "max_tokens" in body:
            body["max_completion_tokens"] = body.pop("max_tokens")
        return orjson.dumps(body)

    def hold_seconds(self, headers: dict[str, str]) -> float | None:
        return openai_hold_seconds(headers)

    def limit_caps(self, headers: dict[str, str]) -> dict[str, int]:
        return openai_limit_caps(headers, self._limits)
