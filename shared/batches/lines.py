"""Batch input lines: one internal JSONL shape per dialect, parsed into the internal model by the
same dialect parsers the live routes use, and validated before any line runs.

OpenAI lines are the client's own file: `{"custom_id", "method", "url", "body"}`. Anthropic and
Gemini batches arrive inline; the API stores each request as one line of the same kind:
`{"custom_id", "params"}` and `{"key", "request"}`.

A batch has one endpoint (OpenAI's rule: the batch's `endpoint`); a line whose `url` differs is a
validation error naming its line. An `/v1/embeddings` line parses to an `EmbeddingRequest` and is
checked as the live route checks it (`embedding_parts.plan`: an embedding model, token arrays
only to upstreams that take them), so a batch never fails a line the live route would refuse.
"""

from __future__ import annotations

import re
from array import array
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import msgspec

from shared.batches.records import BatchDialect, LineError
from shared.bounds import check_embedding, check_request
from shared.config import BatchSettings, Config
from shared.embedding_parts import plan
from shared.embeddings import EmbeddingRequest
from shared.errors import GatewayError
from shared.model import ChatRequest, Document
from shared.protocols import anthropic_messages, gemini, openai_chat, openai_embeddings, openai_responses
from shared.tenants.policy import allows

EMBEDDINGS_ENDPOINT = "/v1/embeddings"
OPENAI_ENDPOINTS = ("/v1/chat/completions", "/v1/responses", EMBEDDINGS_ENDPOINT)
ANTHROPIC_ENDPOINT = "/v1/messages"
GEMINI_ENDPOINT = "generateContent"
_ANTHROPIC_ID = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")


class OpenAILine(msgspec.Struct):
    custom_id: str
    method: str
    url: str
    body: msgspec.Raw


class AnthropicLine(msgspec.Struct):
    custom_id: str
    params: msgspec.Raw


class GeminiLine(msgspec.Struct):
    key: str
    request: msgspec.Raw


_openai = msgspec.json.Decoder(OpenAILine)
_anthropic = msgspec.json.Decoder(AnthropicLine)
_gemini = msgspec.json.Decoder(GeminiLine)
def _responses_line(body: bytes) -> ChatRequest:
    wire = openai_responses.decode(body)
    # A batch line is answered once into the output file and stored nowhere else, so it can
    # neither chain from a stored Response nor be chained from: say so rather than drop the id.
    if wire.previous_response_id is not None:
        raise LineProblem("invalid_request", "'previous_response_id' is not available in a batch: send the "
                          "whole conversation in 'input'.", "body.previous_response_id")
    return openai_responses.to_request(wire)


_OPENAI_PARSERS: dict[str, Callable[[bytes], ChatRequest | EmbeddingRequest]] = {
    "/v1/chat/completions": openai_chat.parse_request,
    "/v1/responses": lambda body: _responses_line(body),
    EMBEDDINGS_ENDPOINT: openai_embeddings.parse_request,
}


class LineProblem(Exception):
    def __init__(self, code: str, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.code, self.message, self.param = code, message, param


@dataclass(frozen=True, slots=True)
class Line:
    custom_id: str
    request: ChatRequest | EmbeddingRequest  # an embedding request on a batch of `/v1/embeddings`


def parse_line(dialect: BatchDialect, endpoint: str, model: str, raw: bytes) -> Line:
    """One line -> its custom id and the internal request. Raises LineProblem."""
    try:
        if dialect == "openai":
            ol = _openai.decode(raw)
            if ol.method.upper() != "POST":
                raise LineProblem("invalid_method", f"'method' must be POST, not {ol.method!r}.", "method")
            if ol.url != endpoint:
                raise LineProblem("mismatched_url", f"'url' is {ol.url!r} but the batch's endpoint is {endpoint!r}.",
                                  "url")
            custom_id, req = ol.custom_id, _OPENAI_PARSERS[endpoint](bytes(ol.body))
        elif dialect == "anthropic":
            al = _anthropic.decode(raw)
            if not _ANTHROPIC_ID.match(al.custom_id):
                raise LineProblem("invalid_custom_id", "'custom_id' must be 1-64 letters, digits, '-' or '_'.",
                                  "custom_id")
            custom_id, req = al.custom_id, anthropic_messages.parse_request(bytes(al.params))
        else:
            gl = _gemini.decode(raw)
            custom_id, req = gl.key, gemini.parse_request(bytes(gl.request), model, False)
    except msgspec.ValidationError as exc:
        raise LineProblem("invalid_line", f"The line does not match the batch line format: {exc}") from None
    except msgspec.DecodeError:
        raise LineProblem("invalid_json_line", "The line is not valid JSON.") from None
    except GatewayError as err:
        param = f"body.{err.param}" if err.param and dialect == "openai" else err.param
        raise LineProblem("invalid_request", err.message, param) from None
    if not custom_id:
        raise LineProblem("invalid_custom_id", "'custom_id' must not be empty.", "custom_id")
    if isinstance(req, ChatRequest) and req.stream:
        raise LineProblem("invalid_request", "Streaming is not available in a batch.", "body.stream")
    if isinstance(req, ChatRequest) and any(isinstance(p, Document) and p.file_id is not None
                                            for m in req.messages for p in m.content):
        # Live requests resolve these in the API (api/documents.py); a batch's lines are fed
        # to the workers as they are, so the file's contents must be in the line.
        raise LineProblem("invalid_request", "Files by 'file_id' are not available in a batch line: send the "
                          "file inline ('file_data', or a 'base64' document source).",
                          "body.file_id" if dialect == "openai" else "file_id")
    return Line(custom_id, req)


def _check_request(config: Config, req: ChatRequest | EmbeddingRequest, client: str,
                   dialect: BatchDialect) -> LineProblem | None:
    """The line's model exists for the batch's owner (`client`: another tenant's model is as if
    absent) and serves the line's kind of request, and the request is within the bounds a live
    one gets (shared/bounds.py)."""
    model = config.model(req.model)
    if model is None or not allows(config, client, req.model):
        return LineProblem("model_not_found", f"The model {req.model!r} does not exist.", "body.model")
    if isinstance(req, EmbeddingRequest):
        try:
            plan(config, req)
            check_embedding(req, config.request_limits)
        except GatewayError as err:
            code = "model_not_found" if err.status == 404 else "invalid_request"
            return LineProblem(code, err.message, f"body.{err.param}" if err.param else None)
    elif model.kind == "embedding":
        return LineProblem("model_not_found", f"The model {req.model!r} is an embedding model: it serves "
                           f"{EMBEDDINGS_ENDPOINT} only.", "body.model")
    else:
        try:
            check_request(req, model, config.request_limits)
        except GatewayError as err:
            param = f"body.{err.param}" if err.param and dialect == "openai" else err.param
            return LineProblem("invalid_request", err.message, param)
    return None


@dataclass(slots=True)
class Validation:
    total: int = 0
    size: int = 0
    offsets: array[int] = field(default_factory=lambda: array("Q"))  # request n starts at byte offsets[n]
    errors: list[LineError] = field(default_factory=list)
    models: set[str] = field(default_factory=set)


MAX_REPORTED_ERRORS = 1000


def validate(lines: Iterable[bytes], dialect: BatchDialect, endpoint: str, model: str, config: Config,
             limits: tuple[int, int] | None = None, client: str = "") -> Validation:
    """Checks every line before any runs: format, duplicate custom ids, endpoint, model (one the
    batch's owner, `client`, may use), the request bounds a live request gets, sizes.
    Errors carry the 1-based line number; the line offsets index lets the feeder read any line."""
    settings: BatchSettings = config.batches
    max_lines, max_bytes = limits or (settings.max_lines, settings.max_bytes)
    v = Validation()
    seen: set[str] = set()

    def problem(code: str, message: str, line: int | None, param: str | None = None) -> None:
        if len(v.errors) < MAX_REPORTED_ERRORS:
            v.errors.append(LineError(code, message, line, param))

    for n, raw in enumerate(lines, 1):  # n: the 1-based line number the client sees
        start = v.size
        v.size += len(raw)
        if not raw.strip():
            continue  # a blank line (after the final newline, say) is not a request
        v.total += 1
        v.offsets.append(start)
        if len(raw) > settings.max_line_bytes:
            problem("line_too_large", f"The line is {len(raw)} bytes; the limit is {settings.max_line_bytes}.", n)
            continue
        try:
            parsed = parse_line(dialect, endpoint, model, raw)
        except LineProblem as p:
            problem(p.code, p.message, n, p.param)
            continue
        if parsed.custom_id in seen:
            problem("duplicate_custom_id", f"The custom_id {parsed.custom_id!r} appears more than once.", n,
                    "custom_id")
        seen.add(parsed.custom_id)
        if (wrong := _check_request(config, parsed.request, client, dialect)) is not None:
            problem(wrong.code, wrong.message, n, wrong.param)
        v.models.add(parsed.request.model)
    if v.total > max_lines:
        problem("too_many_requests", f"The file has {v.total} requests; the limit is {max_lines}.", None)
    if v.size > max_bytes:
        problem("file_too_large", f"The file is {v.size} bytes; the limit is {max_bytes}.", None)
    if v.total == 0 and not v.errors:
        problem("empty_file", "The file holds no requests.", None)
    return v
