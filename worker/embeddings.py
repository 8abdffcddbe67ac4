"""The worker's side of an embedding job: one upstream call, one `EmbeddingComplete` event.

The job runs through the same loop as a chat job (worker/loop.py: claim, retries, 429 re-queue,
ack with the real usage); only building the call and reading its answer differ, and they are
here. The chat provider adapter still reads the upstream's errors and rate-limit headers.
Vectors are stored as the upstream sent them; the API converts to the client's format.
"""

from __future__ import annotations

from typing import Protocol, cast

import msgspec
import orjson

from shared.config import Account
from shared.embeddings import EmbeddingComplete, EmbeddingRequest, EmbeddingResponse, estimate_tokens
from shared.jobs import Job
from shared.model import StreamEvent, Timing
from shared.protocols import gemini_embeddings, gemini_upstream, mistral_embeddings, openai_embeddings
from worker.providers.base import Provider, UpstreamRequest
from worker.upstream import Transport, UpstreamResult, fetch, unreadable


class EmbeddingUpstream(Protocol):
    def request(self, job: Job, req: EmbeddingRequest) -> UpstreamRequest: ...

    def parse(self, body: bytes, job: Job, req: EmbeddingRequest) -> EmbeddingResponse: ...


class OpenAIEmbeddings:
    """openai, openai-compatible servers, the mock; `mistral=True` for Mistral's request fields."""

    def __init__(self, account: Account, mistral: bool = False) -> None:
        self._url = f"{account.base_url}/embeddings"
        self._headers = {"content-type": "application/json", **account.headers}
        if account.api_key:
            self._headers["authorization"] = f"Bearer {account.api_key}"
        self._mistral = mistral
        # OpenAI and Mistral send base64 on request (smaller, and no float parsing on either side);
        # compatible servers differ, so they are asked for floats, which they all send.
        self._base64_ok = account.provider in ("openai", "mistral", "mock")

    def request(self, job: Job, req: EmbeddingRequest) -> UpstreamRequest:
        encoding = req.encoding_format if self._base64_ok else "float"
        if self._mistral:
            body = mistral_embeddings.build_request(req, job.upstream_model, encoding)
        else:
            body = openai_embeddings.build_request(req, job.upstream_model, encoding)
        return UpstreamRequest(self._url, self._headers, orjson.dumps(body))

    def parse(self, body: bytes, job: Job, req: EmbeddingRequest) -> EmbeddingResponse:
        resp = openai_embeddings.parse_response(body, job.upstream_model, len(req.inputs))
        if not resp.usage_known:  # some compatible servers send no usage: charge the estimate
            resp.input_tokens = estimate_tokens(req.inputs)
        return resp


class GeminiEmbeddings:
    def __init__(self, account: Account) -> None:
        self._base = account.base_url
        self._headers = {**gemini_upstream.headers(account.api_key), **account.headers}

    def request(self, job: Job, req: EmbeddingRequest) -> UpstreamRequest:
        body = gemini_embeddings.build_request(req, job.upstream_model)
        return UpstreamRequest(self._base + gemini_embeddings.path(job.upstream_model), self._headers,
                               orjson.dumps(body))

    def parse(self, body: bytes, job: Job, req: EmbeddingRequest) -> EmbeddingResponse:
        return gemini_embeddings.parse_response(body, req, job.upstream_model)


def embedding_upstream(account: Account) -> EmbeddingUpstream:
    """Anthropic and DeepSeek accounts never get embedding jobs: the config check refuses them."""
    if account.provider == "gemini":
        return GeminiEmbeddings(account)
    return OpenAIEmbeddings(account, mistral=account.provider == "mistral")


async def call(http: Transport, provider: Provider, adapter: EmbeddingUpstream, job: Job,
               upstream: UpstreamRequest, seen: UpstreamResult) -> EmbeddingResponse:
    """One try at the job (errors, 429s included, raise as GatewayError for the loop to handle)."""
    assert job.embedding is not None
    body = await fetch(http, provider, upstream, seen)
    try:
        return adapter.parse(body, job, job.embedding)
    except (ValueError, KeyError, TypeError, msgspec.DecodeError) as exc:
        raise unreadable(exc) from None


def complete(resp: EmbeddingResponse, timing: Timing) -> StreamEvent:
    """The job's one event. The writer encodes whatever it holds; the API reads an embedding
    job's record with shared.embeddings.decode_embedding_events, which knows this event."""
    return cast(StreamEvent, EmbeddingComplete(resp, timing))
