"""The mock provider's embeddings: deterministic float32 vectors in every dialect, strict inputs."""

from __future__ import annotations

import base64
import struct
from typing import Any

import pytest

from shared.mock import MockSettings
from shared.mock.embeddings import vector

pytestmark = pytest.mark.anyio

GEMINI_BATCH = "/v1beta/models/mock-embed:batchEmbedContents"


def gemini_request(text: str, **extra: Any) -> dict[str, Any]:
    return {"model": "models/mock-embed", "content": {"parts": [{"text": text}]}, **extra}


def test_vectors_are_float32_exact_and_dimensions_take_a_prefix() -> None:
    v = vector("hello", 40)
    assert struct.unpack("<40f", struct.pack("<40f", *v)) == tuple(v)
    assert vector("hello", 12) == v[:12] and vector("hello", 40) == v
    assert vector("hello", 40) != vector("hello!", 40) != vector([1, 2], 40)
    assert all(-1 <= x < 1 for x in v)


async def test_openai_float_and_base64_are_the_same_vectors(client_for: Any) -> None:
    async with client_for(MockSettings(embedding_dimensions=16)) as (client, app):
        floats = (await client.post("/v1/embeddings", json={"model": "m", "input": ["abcdefgh", [7, 8, 9]]})).json()
        b64 = (await client.post("/v1/embeddings", json={"model": "m", "input": ["abcdefgh", [7, 8, 9]],
                                                          "encoding_format": "base64"})).json()
    assert [d["embedding"] for d in floats["data"]] == [vector("abcdefgh", 16), vector([7, 8, 9], 16)]
    for f, b in zip(floats["data"], b64["data"], strict=True):
        assert list(struct.unpack("<16f", base64.b64decode(b["embedding"]))) == f["embedding"]
    assert floats["usage"] == {"prompt_tokens": 2 + 3, "total_tokens": 5}
    assert app.state.stats.input_tokens == 10


@pytest.mark.parametrize(("body", "status"), [
    ({"model": "m", "input": ""}, 400),
    ({"model": "m", "input": []}, 400),
    ({"model": "m", "input": ["a", "b", "c"]}, 400),  # over max_embedding_inputs=2
    ({"model": "m", "input": "a", "dimensions": 0}, 400),
    ({"input": "a"}, 400),
])
async def test_openai_refusals(client_for: Any, body: dict[str, Any], status: int) -> None:
    async with client_for(MockSettings(max_embedding_inputs=2)) as (client, _):
        reply = await client.post("/v1/embeddings", json=body)
    assert reply.status_code == status and reply.json()["error"]["type"] == "invalid_request_error"


async def test_mistral_is_strict(client_for: Any) -> None:
    async with client_for(MockSettings()) as (client, _):
        ok = await client.post("/mistral/v1/embeddings", json={"model": "m", "input": ["a"], "output_dimension": 4,
                                                                "output_dtype": "float"})
        extra = await client.post("/mistral/v1/embeddings", json={"model": "m", "input": ["a"], "user": "u"})
        tokens = await client.post("/mistral/v1/embeddings", json={"model": "m", "input": [[1, 2]]})
    assert ok.json()["data"][0]["embedding"] == vector("a", 4)
    assert extra.status_code == 422 and extra.json()["message"]["detail"][0]["loc"] == ["body", "user"]
    assert tokens.status_code == 422


async def test_gemini_single_and_batch(client_for: Any) -> None:
    async with client_for(MockSettings(api_key="g")) as (client, _):
        headers = {"x-goog-api-key": "g"}
        one = await client.post("/v1/models/mock-embed:embedContent", headers=headers,
                                json={"content": {"parts": [{"text": "a"}]}, "outputDimensionality": 5})
        batch = await client.post(GEMINI_BATCH, headers=headers,
                                  json={"requests": [gemini_request("a", outputDimensionality=5),
                                                     gemini_request("b", outputDimensionality=5)]})
        tasked = await client.post(GEMINI_BATCH, headers=headers,
                                   json={"requests": [gemini_request("a", taskType="RETRIEVAL_QUERY")]})
        too_many = await client.post(GEMINI_BATCH, headers=headers, json={"requests": [gemini_request("a")] * 101})
        wrong_model = await client.post(GEMINI_BATCH, headers=headers,
                                        json={"requests": [{**gemini_request("a"), "model": "models/x"}]})
        no_key = await client.post(GEMINI_BATCH, json={"requests": [gemini_request("a")]})
    assert one.json() == {"embedding": {"values": vector("a", 5, "|")}}
    assert batch.json() == {"embeddings": [{"values": vector("a", 5, "|")}, {"values": vector("b", 5, "|")}]}
    assert tasked.json()["embeddings"][0]["values"] != vector("a", 64, "|")
    assert too_many.status_code == 400 and "at most 100" in too_many.json()["error"]["message"]
    assert wrong_model.status_code == 400
    assert no_key.status_code == 401 and no_key.json()["error"]["status"] == "UNAUTHENTICATED"


async def test_rate_limits_charge_the_input_tokens(client_for: Any) -> None:
    async with client_for(MockSettings(tpm=60, bucket_seconds=10)) as (client, _):  # a bucket of 10 tokens
        first = await client.post("/v1/embeddings", json={"model": "m", "input": "x" * 32})  # 8 tokens
        second = await client.post("/v1/embeddings", json={"model": "m", "input": "x" * 32})
    assert first.status_code == 200 and first.headers["x-ratelimit-remaining-tokens"] == "2"
    assert second.status_code == 429 and int(second.headers["retry-after"]) >= 1
