"""Embeddings wire formats and the vector codec: parsing, building, and bit-exact conversion."""

from __future__ import annotations

import base64
import math
import struct
from typing import Any, cast

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.embeddings import (
    EmbeddingComplete,
    EmbeddingRequest,
    EmbeddingResponse,
    as_format,
    base64_to_floats,
    decode_embedding_events,
    estimate_tokens,
    floats_to_base64,
    split,
)
from shared.errors import GatewayError
from shared.model import StreamEvent
from shared.protocols import gemini_embeddings, mistral_embeddings, openai_embeddings
from shared.redis.record import encode_events

float32s = st.floats(width=32, allow_nan=False)


def bits(values: list[float]) -> bytes:
    return struct.pack(f"<{len(values)}f", *values)


@given(st.lists(float32s, max_size=64))
def test_float32_values_survive_base64_and_back_bit_for_bit(values: list[float]) -> None:
    back = base64_to_floats(floats_to_base64(values))
    assert bits(back) == bits(values)
    assert all(math.copysign(1, a) == math.copysign(1, b) for a, b in zip(back, values, strict=True))  # -0.0


@given(st.binary(max_size=256).map(lambda raw: raw[: len(raw) // 4 * 4]))
def test_base64_to_floats_and_back_is_the_same_string(raw: bytes) -> None:
    values = struct.unpack(f"<{len(raw) // 4}f", raw)
    if any(math.isnan(v) for v in values):
        return  # NaN payload bits are not a value an embedding can hold
    b64 = base64.b64encode(raw).decode()
    assert as_format(as_format(b64, "float"), "base64") == b64


@given(st.lists(st.floats(width=32, allow_nan=False, allow_infinity=False), min_size=1, max_size=32),
       st.sampled_from(["float", "base64"]))
def test_vectors_survive_the_relay(values: list[float], upstream_form: str) -> None:
    """Worker -> Redis (msgspec) -> API -> client (orjson), in whichever form the upstream sent."""
    vector = values if upstream_form == "float" else floats_to_base64(values)
    record = encode_events([cast(StreamEvent, EmbeddingComplete(EmbeddingResponse("m", [vector])))])
    [event] = decode_embedding_events(record)
    assert isinstance(event, EmbeddingComplete)
    for client_form in ("float", "base64"):
        body = orjson.loads(openai_embeddings.render_response(event.response, "m", client_form))
        got = body["data"][0]["embedding"]
        assert bits(got if client_form == "float" else base64_to_floats(got)) == bits(values)


def test_split_keeps_order_and_sizes() -> None:
    items: list[Any] = [str(i) for i in range(7)]
    assert split(items, 3) == [["0", "1", "2"], ["3", "4", "5"], ["6"]]
    assert [x for part in split(items, 2) for x in part] == items


def test_estimate_matches_the_mocks_count() -> None:
    assert estimate_tokens(["abcd", "abcde", "a", [1, 2, 3]]) == 1 + 2 + 1 + 3


# --- OpenAI ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("given", "inputs"), [
    ("hi", ["hi"]),
    (["a", "b"], ["a", "b"]),
    ([1, 2, 3], [[1, 2, 3]]),
    ([[1, 2], [3]], [[1, 2], [3]]),
    (["a", [1]], ["a", [1]]),
])
def test_openai_inputs(given: Any, inputs: list[Any]) -> None:
    req = openai_embeddings.parse_request(orjson.dumps({"model": "m", "input": given}))
    assert req.inputs == inputs and req.encoding_format == "float"


@pytest.mark.parametrize(("body", "param"), [
    ({"model": "m"}, None),
    ({"model": "m", "input": ""}, "input"),
    ({"model": "m", "input": [[]]}, "input[0]"),
    ({"model": "m", "input": [True]}, "input[0]"),
    ({"model": "m", "input": "x", "encoding_format": "int8"}, "encoding_format"),
    ({"model": "m", "input": "x", "dimensions": 0}, "dimensions"),
])
def test_openai_bad_bodies_name_the_field(body: dict[str, Any], param: str | None) -> None:
    with pytest.raises(GatewayError) as caught:
        openai_embeddings.parse_request(orjson.dumps(body))
    assert caught.value.status == 400
    if param is not None:
        assert caught.value.param == param


def test_openai_render_converts_only_on_request() -> None:
    floats = [0.5, -0.25]
    b64 = floats_to_base64(floats)
    resp = EmbeddingResponse("up", [floats, b64], 7)
    as_float = orjson.loads(openai_embeddings.render_response(resp, "pub", "float"))
    assert [d["embedding"] for d in as_float["data"]] == [floats, floats]
    assert as_float["usage"] == {"prompt_tokens": 7, "total_tokens": 7} and as_float["model"] == "pub"
    as_b64 = orjson.loads(openai_embeddings.render_response(resp, "pub", "base64"))
    assert [d["embedding"] for d in as_b64["data"]] == [b64, b64]


def test_openai_upstream_answer_is_put_in_index_order() -> None:
    body = orjson.dumps({"data": [{"index": 1, "embedding": "AAAAPw=="}, {"index": 0, "embedding": [1.0]}],
                         "usage": {"prompt_tokens": 3}})
    resp = openai_embeddings.parse_response(body, "m", 2)
    assert resp.vectors == [[1.0], "AAAAPw=="] and resp.input_tokens == 3
    with pytest.raises(ValueError):
        openai_embeddings.parse_response(body, "m", 3)


def test_mistral_body_has_only_mistral_fields() -> None:
    req = EmbeddingRequest("m", ["a"], dimensions=256, user="u", task_type="RETRIEVAL_QUERY")
    body = mistral_embeddings.build_request(req, "codestral-embed", "base64")
    assert body == {"model": "codestral-embed", "input": ["a"], "output_dtype": "float",
                    "encoding_format": "base64", "output_dimension": 256}


# --- Gemini ----------------------------------------------------------------------------------


def test_gemini_batch_round_trip() -> None:
    body = {"requests": [{"model": "models/m", "content": {"parts": [{"text": "a"}, {"text": "b"}]},
                          "task_type": "RETRIEVAL_DOCUMENT", "title": "T", "outputDimensionality": 8},
                         {"model": "models/m", "content": {"parts": [{"text": "c"}]},
                          "taskType": "RETRIEVAL_DOCUMENT", "title": "T", "output_dimensionality": 8}]}
    req = gemini_embeddings.parse_request(orjson.dumps(body), "m", "batchEmbedContents")
    assert req.inputs == ["a\nb", "c"] and (req.task_type, req.title, req.dimensions) == ("RETRIEVAL_DOCUMENT", "T", 8)
    out = gemini_embeddings.build_request(req, "text-embedding-004")
    assert out["requests"][0] == {"model": "models/text-embedding-004", "content": {"parts": [{"text": "a\nb"}]},
                                  "taskType": "RETRIEVAL_DOCUMENT", "title": "T", "outputDimensionality": 8}
    assert gemini_embeddings.path("models/text-embedding-004") == "/v1beta/models/text-embedding-004:batchEmbedContents"


def test_gemini_batch_with_mixed_task_types_is_refused() -> None:
    body = {"requests": [{"content": {"parts": [{"text": "a"}]}, "taskType": "RETRIEVAL_QUERY"},
                         {"content": {"parts": [{"text": "b"}]}}]}
    with pytest.raises(GatewayError) as caught:
        gemini_embeddings.parse_request(orjson.dumps(body), "m", "batchEmbedContents")
    assert caught.value.param == "requests[1].taskType"


def test_gemini_render_is_always_floats() -> None:
    resp = EmbeddingResponse("m", [floats_to_base64([0.5, 2.0])])
    single = orjson.loads(gemini_embeddings.render_response(resp, "embedContent"))
    assert single == {"embedding": {"values": [0.5, 2.0]}}
    assert orjson.loads(gemini_embeddings.render_response(resp, "batchEmbedContents")) == \
        {"embeddings": [{"values": [0.5, 2.0]}]}


def test_gemini_answer_without_usage_is_charged_the_estimate() -> None:
    req = EmbeddingRequest("m", ["abcdefgh", "x"])
    resp = gemini_embeddings.parse_response(orjson.dumps({"embeddings": [{"values": [1.0]}, {"values": [2.0]}]}),
                                            req, "m")
    assert resp.vectors == [[1.0], [2.0]] and resp.input_tokens == 3 and not resp.usage_known
