"""`POST /v1/embeddings` (OpenAI) and Gemini's `models/{model}:embedContent` /
`:batchEmbedContents` (reached through api/routes/gemini.py, which owns the `models/` paths)."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

from redis.exceptions import RedisError
from starlette.requests import Request
from starlette.responses import Response

from api.auth import authenticate
from api.dialects import GEMINI, OPENAI_CHAT, Dialect
from api.embeddings import Embedded, account_result, embed
from api.errors import error_response
from api.hangup import ClientLeft, unless_client_leaves
from api.limits import check_embedding, parse_bounded, read_body
from api.state import state_of
from api.submission import JobOptions
from shared.embeddings import EmbeddingRequest
from shared.errors import GatewayError
from shared.protocols import gemini_embeddings, openai_embeddings

log = logging.getLogger("sluice.api")


async def _serve(request: Request, dialect: Dialect, label: str, parse: Callable[[bytes], EmbeddingRequest],
                 render: Callable[[Embedded, EmbeddingRequest], bytes], input_field: str) -> Response:
    """`label` names the endpoint in the metrics (the chat dialect only lends its error format)."""
    started = time.monotonic()
    state = state_of(request)
    client = ""
    model = ""
    try:
        client = authenticate(request, state.clients)
        limits = state.config.request_limits
        req = parse_bounded(parse, await read_body(request, limits.max_body_bytes, limits.body_read_seconds))
        check_embedding(req, limits, input_field, "dimensions" if dialect is OPENAI_CHAT else "outputDimensionality")
        model = req.model
        options = JobOptions.from_headers(request.headers)
        work = embed(state, client, req, priority=options.priority, max_wait=options.max_wait,
                     input_field=input_field)
        try:
            # a client that hangs up (an SDK timeout, usually followed by a retry) takes the
            # still-queued parts out of the queue: an abandoned request is not spent twice
            done = await unless_client_leaves(work, request.receive)
        except ClientLeft:
            log.info("client left; queued embedding parts dropped", extra={"path": request.url.path})
            state.metrics.request(client, model, label, 499)
            return Response(b"", 499)
        response_headers = account_result(state, client, label, done, started)
        return Response(render(done, req), 200, headers=response_headers, media_type="application/json")
    except GatewayError as err:
        if client:
            state.metrics.request(client, model, label, err.status)
        return error_response(dialect, err)
    except RedisError:
        log.exception("redis unavailable", extra={"path": request.url.path})
        return error_response(dialect, GatewayError(
            "upstream_unavailable", "The queue is unavailable; retry shortly.", status=503, retry_after=1.0))



async def embeddings(request: Request) -> Response:
    return await _serve(request, OPENAI_CHAT, "openai_embeddings", openai_embeddings.parse_request,
                        lambda done, req: openai_embeddings.render_response(done.response, req.model,
                                                                            req.encoding_format), "input")


def gemini_embed(request: Request, model: str, method: str) -> Awaitable[Response]:
    """`method` is `embedContent` or `batchEmbedContents` (gemini_embeddings.METHODS)."""
    return _serve(request, GEMINI, "gemini_embeddings",
                  lambda body: gemini_embeddings.parse_request(body, model, method),
                  lambda done, req: gemini_embeddings.render_response(done.response, method),
                  "content" if method == "embedContent" else "requests")

