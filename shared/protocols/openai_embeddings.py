"""OpenAI `POST /v1/embeddings`, both directions (Mistral's embeddings are the same shape).

Client side: a client's body -> EmbeddingRequest; EmbeddingResponse -> OpenAI's list of
`embedding` objects, each vector in the `encoding_format` the client asked for.
Upstream side: EmbeddingRequest -> the body for openai, openai-compatible and mistral servers;
their answer -> EmbeddingResponse, vectors kept in the form they arrived in (floats or base64).
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec
import orjson

from shared.embeddings import MAX_INPUTS, EmbeddingRequest, EmbeddingResponse, Input, Vector, as_format
from shared.errors import invalid
from shared.protocols.common import decode_answer, decode_body

# --- client side -----------------------------------------------------------------------------


class _Body(msgspec.Struct):
    model: str
    input: str | list[Any]  # a text, texts, a token array or token arrays; checked in _inputs
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = None
    user: str | None = None


_body_decoder = msgspec.json.Decoder(_Body)


def parse_request(body: bytes) -> EmbeddingRequest:
    data = decode_body(_body_decoder, body)
    if data.dimensions is not None and data.dimensions <= 0:
        raise invalid("'dimensions' must be a positive integer.", "dimensions")
    return EmbeddingRequest(model=data.model, inputs=_inputs(data.input), dimensions=data.dimensions,
                            encoding_format=data.encoding_format, user=data.user)


def _inputs(value: str | list[Any]) -> list[Input]:
    if isinstance(value, str):
        if not value:
            raise invalid("'input' must not be an empty string.", "input")
        return [value]
    if not value:
        raise invalid("'input' must not be an empty list.", "input")
    if all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        return [value]  # one token array
    if len(value) > MAX_INPUTS:
        raise invalid(f"'input' holds {len(value)} items; at most {MAX_INPUTS} are allowed per request.", "input")
    out: list[Input] = []
    for i, item in enumerate(value):
        if isinstance(item, str):
            if not item:
                raise invalid(f"'input[{i}]' must not be an empty string.", f"input[{i}]")
            out.append(item)
        elif isinstance(item, list) and item and all(isinstance(t, int) and not isinstance(t, bool) for t in item):
            out.append(item)
        else:
            raise invalid(f"'input[{i}]' must be a non-empty string or a non-empty array of integer tokens.",
                          f"input[{i}]")
    return out


def render_response(resp: EmbeddingResponse, model: str, encoding: str) -> bytes:
    fmt: Any = encoding
    data = [{"object": "embedding", "index": i, "embedding": as_format(v, fmt)} for i, v in enumerate(resp.vectors)]
    usage = {"prompt_tokens": resp.input_tokens, "total_tokens": resp.input_tokens}
    return orjson.dumps({"object": "list", "data": data, "model": model, "usage": usage})


# --- upstream side ---------------------------------------------------------------------------


def build_request(req: EmbeddingRequest, upstream_model: str, encoding: str) -> dict[str, Any]:
    """`encoding` is what we ask the upstream for (not every compatible server sends base64)."""
    body: dict[str, Any] = {"model": upstream_model, "input": req.inputs, "encoding_format": encoding}
    if req.dimensions is not None:
        body["dimensions"] = req.dimensions
    if req.user is not None:
        body["user"] = req.user
    return body


class _Datum(msgspec.Struct):
    embedding: list[float] | str
    index: int = 0


class _Usage(msgspec.Struct):
    prompt_tokens: int = 0


class _Answer(msgspec.Struct):
    data: list[_Datum]
    usage: _Usage | None = None


_answer_decoder = msgspec.json.Decoder(_Answer)


def parse_response(body: bytes, model: str, expected: int) -> EmbeddingResponse:
    answer = decode_answer(_answer_decoder, body)
    if len(answer.data) != expected:
        raise ValueError(f"the upstream sent {len(answer.data)} vectors for {expected} inputs")
    ordered = sorted(answer.data, key=lambda d: d.index)
    vectors: list[Vector] = [d.embedding for d in ordered]
    if answer.usage is None:
        return EmbeddingResponse(model, vectors, usage_known=False)
    return EmbeddingResponse(model, vectors, answer.usage.prompt_tokens)
