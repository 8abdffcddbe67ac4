"""Embeddings in each dialect the mock plays, with deterministic vectors.

    POST /v1/embeddings                                   OpenAI (also openai-compatible, mock)
    POST /mistral/v1/embeddings                           Mistral
    POST /v1beta/models/{model}:embedContent              Gemini, also :batchEmbedContents
         (and the same under /v1/models/...)

Vectors: `embedding_dimensions` values (or the request's dimensions / output_dimension /
outputDimensionality, a prefix of the same sequence, as Matryoshka models truncate), each
(n - 2^23) / 2^23 for a 24-bit n drawn from SHA-256 of the input, so every value is exactly a
float32 and survives float32 <-> base64 unchanged. The input is the text, or a token array
(`tokens:1,2,3`); for Gemini, taskType and title also feed the hash (they change real vectors).
Usage: max(1, ceil(characters / 4)) per text, the length of a token array; Gemini sends none.

Strict where the real APIs are: empty input, unknown fields (Mistral: 422), a list over the
per-call limit (`max_embedding_inputs`; Gemini at most 100), token arrays to Mistral or Gemini.
The cycle is the chat one's (shared/mock/core.py): auth -> x-mock-fail -> parse -> rate limits
(a call costs 1 request and its input tokens) -> latency -> answer. An input text that reads
`x-mock-fail: <status>` fails its call like the header does, so one part of a split list can fail.
"""

from __future__ import annotations

import base64
import hashlib
import math
import struct
from dataclasses import dataclass
from typing import Any

import orjson

from shared.mock import gemini
from shared.mock.core import (
    ClientGone,
    Dialect,
    MockError,
    MockState,
    Receive,
    Request,
    Send,
    admit,
    fail_status,
    load_object,
    pause,
    precheck,
    read_body,
    send_body,
    send_error,
)
from shared.mock.mistral import MistralDialect, _extra, _unprocessable
from shared.mock.openai import OpenAIDialect

GEMINI_BATCH_LIMIT = 100
FAIL_MARK = "x-mock-fail: "
_MISTRAL_FIELDS = frozenset(("model", "input", "output_dimension", "output_dtype", "encoding_format", "metadata"))
_GEMINI_REQUEST_FIELDS = frozenset(("model", "content", "taskType", "title", "outputDimensionality"))

Item = str | list[int]


def vector(item: Item, dimensions: int, salt: str = "") -> list[float]:
    seed = (salt + "|" + (item if isinstance(item, str) else "tokens:" + ",".join(map(str, item)))).encode()
    out: list[float] = []
    counter = 0
    while len(out) < dimensions:
        block = hashlib.sha256(seed + counter.to_bytes(4, "big")).digest()
        for i in range(0, 30, 3):
            out.append((int.from_bytes(block[i:i + 3], "big") - 0x800000) / 0x800000)
        counter += 1
    return out[:dimensions]


def tokens_of(item: Item) -> int:
    return len(item) if isinstance(item, list) else max(1, math.ceil(len(item) / 4))


@dataclass(slots=True)
class Call:
    model: str
    inputs: list[Item]
    dimensions: int | None = None
    encoding: str = "float"
    salt: str = ""
    single: bool = False  # Gemini embedContent: one `embedding`, not a list


class _Embeddings:
    """One dialect's reading and rendering; auth, errors and headers come from its chat dialect."""

    chat: Dialect

    def parse(self, req: Request, body: dict[str, Any], limit: int) -> Call:
        raise NotImplementedError

    def render(self, call: Call, vectors: list[list[float]], tokens: int) -> bytes:
        raise NotImplementedError


def _bad(message: str, param: str | None = None) -> MockError:
    return MockError(400, message, param=param)


def _dimensions(value: Any, name: str) -> int | None:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise _bad(f"'{name}' must be a positive integer.", name)
    return value


def _openai_inputs(value: Any, limit: int, tokens_ok: bool) -> list[Item]:
    if isinstance(value, str) or (isinstance(value, list) and value and all(isinstance(t, int) for t in value)):
        value = [value]
    if not isinstance(value, list) or not value:
        raise _bad("'input' must be a non-empty string or array.", "input")
    if len(value) > limit:
        raise _bad(f"'input' holds {len(value)} items; at most {limit} per request.", "input")
    for i, item in enumerate(value):
        if isinstance(item, str) and item:
            continue
        if tokens_ok and isinstance(item, list) and item and all(isinstance(t, int) for t in item):
            continue
        raise _bad(f"'input[{i}]' is invalid.", "input")
    return value


class OpenAIEmbeddings(_Embeddings):
    chat: Dialect = OpenAIDialect()

    def parse(self, req: Request, body: dict[str, Any], limit: int) -> Call:
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise _bad("you must provide a model parameter", "model")
        encoding = body.get("encoding_format", "float")
        if encoding not in ("float", "base64"):
            raise _bad("'encoding_format' must be 'float' or 'base64'.", "encoding_format")
        return Call(model, _openai_inputs(body.get("input"), limit, True),
                    _dimensions(body.get("dimensions"), "dimensions"), encoding)

    def render(self, call: Call, vectors: list[list[float]], tokens: int) -> bytes:
        data = [{"object": "embedding", "index": i, "embedding": _encoded(v, call.encoding)}
                for i, v in enumerate(vectors)]
        return orjson.dumps({"object": "list", "data": data, "model": call.model,
                             "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})


class MistralEmbeddings(OpenAIEmbeddings):
    chat: Dialect = MistralDialect()

    def parse(self, req: Request, body: dict[str, Any], limit: int) -> Call:
        extra = [_extra([name]) for name in body if name not in _MISTRAL_FIELDS]
        if extra:
            raise _unprocessable(extra)
        value = body.get("input")
        if isinstance(value, list) and any(not isinstance(v, str) for v in value):
            raise _unprocessable([{"type": "string_type", "loc": ["body", "input"],
                                   "msg": "Input should be a valid string"}])
        if body.get("output_dtype", "float") != "float":
            raise _bad("The mock serves output_dtype 'float' only.", "output_dtype")
        call = super().parse(req, {k: v for k, v in body.items() if k != "output_dimension"}, limit)
        call.dimensions = _dimensions(body.get("output_dimension"), "output_dimension")
        return call


class GeminiEmbeddings(_Embeddings):
    chat: Dialect = gemini.GeminiDialect()

    def parse(self, req: Request, body: dict[str, Any], limit: int) -> Call:
        model, method = gemini.split_path(req.path) or ("", "")
        if method == "embedContent":
            requests: Any = [body]
            where = ""
        else:
            unknown = [k for k in body if k != "requests"]
            if unknown:
                raise _bad(f'Invalid JSON payload received. Unknown name "{unknown[0]}": Cannot find field.')
            requests, where = body.get("requests"), "requests"
            if not isinstance(requests, list) or not requests:
                raise _bad("* BatchEmbedContentsRequest.requests: must not be empty")
            cap = min(limit, GEMINI_BATCH_LIMIT)
            if len(requests) > cap:
                raise _bad(f"* BatchEmbedContentsRequest.requests: at most {cap} requests can be in one batch")
        inputs: list[Item] = []
        first: dict[str, Any] = requests[0] if isinstance(requests[0], dict) else {}
        for i, one in enumerate(requests):
            at = f"{where}[{i}]." if where else ""
            if not isinstance(one, dict):
                raise _bad(f"Invalid value at '{at}' (EmbedContentRequest).")
            for key in one:
                if key not in _GEMINI_REQUEST_FIELDS:
                    raise _bad(f'Invalid JSON payload received. Unknown name "{key}" at \'{at}\': Cannot find field.')
            if where and one.get("model") != f"models/{model}":
                raise _bad(f"Model names in the batch must match the URL: models/{model}.")
            parts = (one.get("content") or {}).get("parts") if isinstance(one.get("content"), dict) else None
            if not isinstance(parts, list) or not parts or not all(isinstance(p, dict) and "text" in p for p in parts):
                raise _bad(f"* {at}content.parts: text parts are required")
            text = "\n".join(str(p["text"]) for p in parts)
            if not text:
                raise _bad(f"* {at}content: the text to embed is empty")
            inputs.append(text)
        salt = f"{first.get('taskType') or ''}|{first.get('title') or ''}"
        return Call(model, inputs, _dimensions(first.get("outputDimensionality"), "outputDimensionality"),
                    "float", salt, single=not where)

    def render(self, call: Call, vectors: list[list[float]], tokens: int) -> bytes:
        if call.single:
            return orjson.dumps({"embedding": {"values": vectors[0]}})
        return orjson.dumps({"embeddings": [{"values": v} for v in vectors]})


def _encoded(values: list[float], encoding: str) -> list[float] | str:
    if encoding == "base64":
        return base64.b64encode(struct.pack(f"<{len(values)}f", *values)).decode("ascii")
    return values


_OPENAI = OpenAIEmbeddings()
_MISTRAL = MistralEmbeddings()
_GEMINI = GeminiEmbeddings()
_PATHS: dict[str, _Embeddings] = {"/v1/embeddings": _OPENAI, "/mistral/v1/embeddings": _MISTRAL}


def dialect_for(path: str, method: str) -> _Embeddings | None:
    """The embeddings dialect serving this request, or None when it is not an embeddings call."""
    if method != "POST":
        return None
    found = _PATHS.get(path)
    if found is not None:
        return found
    route = gemini.split_path(path)
    if route is not None and route[1] in ("embedContent", "batchEmbedContents"):
        return _GEMINI
    return None


async def exchange(dialect: _Embeddings, state: MockState, req: Request, receive: Receive, send: Send) -> int:
    """One embeddings call (run it under `core.counted`, as chat runs under `core.serve`)."""
    settings = state.settings
    chat = dialect.chat
    try:
        latency = await precheck(chat, settings, req)
        call = dialect.parse(req, load_object(await read_body(receive)), settings.max_embedding_inputs)
        marked = next((item for item in call.inputs if isinstance(item, str) and item.startswith(FAIL_MARK)), None)
        if marked is not None and (code := fail_status(marked[len(FAIL_MARK):])) is not None:
            raise MockError(code, f"Mock failure requested by an input: {code}.", kind="forced",
                            retry_after=1.0 if code == 429 else None)
        tokens = sum(tokens_of(item) for item in call.inputs)
        admission = admit(chat, state, tokens)
    except MockError as err:
        await send_error(chat, err, [], send)
        return err.status
    except ClientGone:
        return 499
    await pause(latency)
    state.stats.input_tokens += tokens
    dims = call.dimensions or settings.embedding_dimensions
    vectors = [vector(item, dims, call.salt) for item in call.inputs]
    await send_body(send, 200, dialect.render(call, vectors, tokens), chat.limit_headers(admission))
    return 200
