"""Mistral La Plateforme and Devstral on vLLM: the OpenAI adapter with Mistral's strict body."""

from __future__ import annotations

import orjson

from shared.jobs import Job
from shared.protocols import mistral
from worker.providers.base import UpstreamRequest
from worker.providers.openai import OpenAIProvider


class MistralProvider(OpenAIProvider):
    def request(self, job: Job) -> UpstreamRequest:
        body = mistral.build_request(job.request, job.upstream_model)
        return UpstreamRequest(self._url, self._headers, orjson.dumps(body))
