"""Gemini `models/{model}:embedContent` and `:batchEmbedContents`, both directions.

Client side: a body -> EmbeddingRequest (one content per input; a content's text parts are
joined with newlines, anything but text is refused); EmbeddingResponse -> `{"embedding":
{"values"}}` or `{"embeddings": [...]}`, always floats (Gemini has no base64 form).
Upstream side: every call goes to `:batchEmbedContents` (it takes one input as well as many),
and Gemini reports no token usage for embeddings, so the job is charged its estimate.
"""

from __future__ import annotations

from typing import Any

import msgspec
import orjson

from shared.embeddings import (
    MAX_INPUTS,
    EmbeddingRequest,
    EmbeddingResponse,
    Input,
    Vector,
    as_floats,
    estimate_tokens,
)
from shared.errors import field_of, invalid
from shared.protocols.common import decode_answer
from shared.protocols.gemini_types import normalize_keys

METHODS = ("embedContent", "batchEmbedContents")

# --- client side -----------------------------------------------------------------------------


class _Part(msgspec.Struct):
    text: str | None = None
    inlineData: Any = None
    fileData: Any = None


class _Content(msgspec.Struct):
    parts: list[_Part]
    role: str | None = None


class _Embed(msgspec.Struct):
    content: _Content
    model: str | None = None
    taskType: str | None = None
    title: str | None = None
    outputDimensionality: int | None = None


class _Batch(msgspec.Struct):
    requests: list[_Embed]


def _convert(value: Any, kind: type[Any]) -> Any:
    try:
        return msgspec.convert(normalize_keys(value), kind)
    except msgspec.ValidationError as exc:
        raise invalid(f"Invalid request: {str(exc).split(' - at ')[0]}", field_of(exc)) from None


def _load(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        raise invalid("The request body is not valid JSON.") from None


def parse_request(body: bytes, model: str, method: str) -> EmbeddingRequest:
    """`model` is the one named in the URL (`models/` prefix removed)."""
    data = _load(body)
    if method == "embedContent":
        return _from_requests([_convert(data, _Embed)], model, "")
    batch: _Batch = _convert(data, _Batch)
    if not batch.requests:
        raise invalid("'requests' must not be empty.", "requests")
    if len(batch.requests) > MAX_INPUTS:
        raise invalid(f"'requests' holds {len(batch.requests)} items; at most {MAX_INPUTS} are allowed.",
                      "requests")
    return _from_requests(batch.requests, model, "requests")


def _from_requests(items: list[_Embed], model: str, where: str) -> EmbeddingRequest:
    first = items[0]
    inputs: list[Input] = []
    for i, item in enumerate(items):
        at = f"{where}[{i}]." if where else ""
        if (item.taskType, item.title, item.outputDimensionality) != \
                (first.taskType, first.title, first.outputDimensionality):
            raise invalid("Every request in a batch must use the same taskType, title and outputDimensionality.",
                          f"{at}taskType")
        if item.model is not None and item.model.removeprefix("models/") != model:
            raise invalid(f"'{at}model' must name the model in the URL ('models/{model}').", f"{at}model")
        inputs.append(_text(item.content, f"{at}content"))
    if first.outputDimensionality is not None and first.outputDimensionality <= 0:
        raise invalid("'outputDimensionality' must be positive.", f"{where + '[0].' if where else ''}"
                      "outputDimensionality")
    return EmbeddingRequest(model=model, inputs=inputs, dimensions=first.outputDimensionality,
                            task_type=first.taskType, title=first.title)


def _text(content: _Content, at: str) -> str:
    texts: list[str] = []
    for j, part in enumerate(content.parts):
        if part.text is None:
            raise invalid("Only text parts can be embedded.", f"{at}.parts[{j}]")
        texts.append(part.text)
    text = "\n".join(texts)
    if not text:
        raise invalid("The content to embed is empty.", f"{at}.parts")
    return text


def render_response(resp: EmbeddingResponse, method: str) -> bytes:
    if method == "embedContent":
        return orjson.dumps({"embedding": {"values": as_floats(resp.vectors[0])}})
    return orjson.dumps({"embeddings": [{"values": as_floats(v)} for v in resp.vectors]})


# --- upstream side ---------------------------------------------------------------------------


def path(upstream_model: str) -> str:
    return f"/v1beta/models/{upstream_model.removeprefix('models/')}:batchEmbedContents"


def build_request(req: EmbeddingRequest, upstream_model: str) -> dict[str, Any]:
    name = "models/" + upstream_model.removeprefix("models/")
    requests: list[dict[str, Any]] = []
    for item in req.inputs:
        if not isinstance(item, str):  # the API refuses these before queueing; never send them
            raise ValueError("Gemini embeds text only")
        one: dict[str, Any] = {"model": name, "content": {"parts": [{"text": item}]}}
        if req.task_type is not None:
            one["taskType"] = req.task_type
        if req.title is not None:
            one["title"] = req.title
        if req.dimensions is not None:
            one["outputDimensionality"] = req.dimensions
        requests.append(one)
    return {"requests": requests}


class _Values(msgspec.Struct):
    values: list[float]


class _Answer(msgspec.Struct):
    embeddings: list[_Values]


_answer_decoder = msgspec.json.Decoder(_Answer)


def parse_response(body: bytes, req: EmbeddingRequest, model: str) -> EmbeddingResponse:
    answer = decode_answer(_answer_decoder, body)
    if len(answer.embeddings) != len(req.inputs):
        raise ValueError(f"the upstream sent {len(answer.embeddings)} vectors for {len(req.inputs)} inputs")
    vectors: list[Vector] = [e.values for e in answer.embeddings]
    return EmbeddingResponse(model, vectors, estimate_tokens(req.inputs), usage_known=False)
