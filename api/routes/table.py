"""Every inference route, listed once.

The table feeds both ways in: the fast path (api/fastpath.py), which serves these POSTs
without FastAPI's router, and the FastAPI app, which owns everything else about the paths
(405 for other methods, the 404 for unknown ones). A new inference endpoint is one line here.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import Response

from api.routes import anthropic_messages, embeddings, gemini, ollama, openai_chat, openai_responses, schemas

Handler = Callable[[Request], Awaitable[Response]]


@dataclass(frozen=True, slots=True)
class InferenceRoute:
    path: str  # the exact path; with `prefix`, every path under it (its last segment is a parameter)
    handler: Handler
    prefix: bool = False
    openapi: dict[str, Any] = field(default_factory=dict)  # the body's schema, for the OpenAPI document

    def fastapi_path(self) -> str:
        return f"{self.path}{{target}}" if self.prefix else self.path


INFERENCE_ROUTES = (
    InferenceRoute("/v1/chat/completions", openai_chat.chat_completions, openapi=schemas.OPENAI_CHAT),
    InferenceRoute("/v1/responses", openai_responses.responses, openapi=schemas.OPENAI_RESPONSES),
    InferenceRoute("/v1/messages", anthropic_messages.messages, openapi=schemas.ANTHROPIC_MESSAGES),
    InferenceRoute("/v1/embeddings", embeddings.embeddings, openapi=schemas.OPENAI_EMBEDDINGS),
    # Ollama's chat (its other routes: api/routes/ollama.py)
    InferenceRoute("/api/chat", ollama.chat, openapi=schemas.OLLAMA_CHAT),
    # Gemini's `models/{model}:{method}` (generate and stream; embedContent and batchEmbedContents
    # go on to api/routes/embeddings.py), under /v1beta and /v1 (the current google-genai SDK
    # calls /v1 when given a custom base URL)
    InferenceRoute("/v1beta/models/", gemini.generate, prefix=True, openapi=schemas.GEMINI),
    InferenceRoute("/v1/models/", gemini.generate, prefix=True, openapi=schemas.GEMINI),
)


def register(app: FastAPI) -> None:
    for route in INFERENCE_ROUTES:
        app.add_api_route(route.fastapi_path(), route.handler, methods=["POST"], openapi_extra=route.openapi or None)
