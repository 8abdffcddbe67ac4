"""The internal model of an embedding request and its answer, and the vector codec.

An embedding job carries an `EmbeddingRequest` (one part of a client's list: the API splits a
list longer than the upstream takes in one call into several jobs, each charged to the buckets
on its own) and is answered by one `EmbeddingComplete` event. Vectors cross Redis in whatever
form the upstream sent them: a list of floats, or OpenAI's base64 of little-endian float32. The
API converts only when the client asked for the other form, and the conversion is exact for
float32 values (every embedding API computes in float32): packing such a float to float32 and
unpacking it gives back the same number, bit for bit.
"""

from __future__ import annotations

import base64
import struct
from typing import Literal

import msgspec

from shared.model import StreamError, Timing

EncodingFormat = Literal["float", "base64"]

Input = str | list[int]  # a text, or a token array (OpenAI and the servers that copy it)
Vector = list[float] | str  # floats, or base64 of little-endian float32

MAX_INPUTS = 2048
"""Most inputs one client request may carry (OpenAI's own cap); longer lists get a 400."""

UPSTREAM_MAX_INPUTS: dict[str, int] = {
    "openai": 2048,
    "gemini": 100,  # batchEmbedContents refuses more than 100 requests
    "mistral": 128,  # conservative; raise it per account with `max_embedding_inputs`
    "openai-compatible": 32,  # text-embeddings-inference's default client batch size
    "mock": 2048,
}
"""Inputs one upstream call may carry, by provider (an account's `max_embedding_inputs` wins)."""

TOKEN_ARRAY_PROVIDERS = frozenset(("openai", "openai-compatible", "mock"))
"""Upstreams that accept token arrays as input; Gemini and Mistral take text only."""

NO_EMBEDDINGS = frozenset(("anthropic", "deepseek"))
"""Providers without an embeddings API: a `kind: embedding` model routed there is a config error."""


class EmbeddingRequest(msgspec.Struct, omit_defaults=True):
    model: str
    inputs: list[Input]
    dimensions: int | None = None
    task_type: str | None = None  # Gemini's taskType (RETRIEVAL_DOCUMENT, ...); others have none
    title: str | None = None  # Gemini's title, for RETRIEVAL_DOCUMENT
    encoding_format: EncodingFormat = "float"  # what the client wants back
    user: str | None = None


class EmbeddingResponse(msgspec.Struct, omit_defaults=True):
    model: str
    vectors: list[Vector]
    input_tokens: int = 0
    usage_known: bool = True  # False: the upstream reports no usage (Gemini); tokens are our estimate


class EmbeddingComplete(msgspec.Struct, tag="embedding", omit_defaults=True):
    """The whole answer to one embedding job, written as the job's only record entry."""

    response: EmbeddingResponse
    timing: Timing | None = None


EmbeddingEvent = EmbeddingComplete | StreamError

_events_decoder = msgspec.json.Decoder(list[EmbeddingEvent])


def decode_embedding_events(payload: bytes) -> list[EmbeddingEvent]:
    return _events_decoder.decode(payload)


# --- tokens ----------------------------------------------------------------------------------


def estimate_tokens(inputs: list[Input]) -> int:
    """The bucket reservation for a part: about four characters per token, a token array's length."""
    total = 0
    for item in inputs:
        total += len(item) if isinstance(item, list) else max(1, (len(item) + 3) // 4)
    return total


# --- vectors ---------------------------------------------------------------------------------


def floats_to_base64(values: list[float]) -> str:
    return base64.b64encode(struct.pack(f"<{len(values)}f", *values)).decode("ascii")


def base64_to_floats(data: str) -> list[float]:
    raw = base64.b64decode(data)
    return list(struct.unpack(f"<{len(raw) // 4}f", raw))


def as_floats(vector: Vector) -> list[float]:
    return base64_to_floats(vector) if isinstance(vector, str) else vector


def as_format(vector: Vector, encoding: EncodingFormat) -> Vector:
    """The vector in the form the client asked for, converting only when it differs."""
    if encoding == "base64":
        return vector if isinstance(vector, str) else floats_to_base64(vector)
    return base64_to_floats(vector) if isinstance(vector, str) else vector


def split(inputs: list[Input], size: int) -> list[list[Input]]:
    """Consecutive parts of at most `size` inputs, in order."""
    return [inputs[i:i + size] for i in range(0, len(inputs), size)]
