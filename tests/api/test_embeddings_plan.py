"""The embeddings executor's pure steps: which parts a request becomes, and how answers join."""

from __future__ import annotations

import pytest

from api.embeddings import answer_of, join, plan
from shared.config import parse_config
from shared.embeddings import EmbeddingComplete, EmbeddingRequest, EmbeddingResponse
from shared.errors import GatewayError
from shared.model import ErrorInfo, StreamError
from shared.redis.record import encode_events

CONFIG = parse_config("""
accounts:
  - {name: oa, provider: openai, api_key: k}
  - {name: tei, provider: openai-compatible, base_url: "http://127.0.0.1:9/v1", max_embedding_inputs: 4}
  - {name: gm, provider: gemini, api_key: k}
models:
  - {name: mixed, kind: embedding, route: [{account: oa, model: e}, {account: tei, model: e}]}
  - {name: google, kind: embedding, route: [{account: gm, model: e}]}
  - {name: openai, kind: embedding, route: [{account: oa, model: e}]}
  - {name: chat, route: [{account: oa, model: c}]}
""", "c.yaml", env={})


def test_parts_fit_the_smallest_upstream_of_the_route_in_order() -> None:
    _, parts = plan(CONFIG, EmbeddingRequest("mixed", [f"t{i}" for i in range(10)], dimensions=8))
    assert [p.inputs for p in parts] == [["t0", "t1", "t2", "t3"], ["t4", "t5", "t6", "t7"], ["t8", "t9"]]
    assert all(p.dimensions == 8 and p.model == "mixed" for p in parts)
    _, parts = plan(CONFIG, EmbeddingRequest("google", [f"t{i}" for i in range(250)]))
    assert [len(p.inputs) for p in parts] == [100, 100, 50]
    _, parts = plan(CONFIG, EmbeddingRequest("openai", ["x"] * 2048))
    assert len(parts) == 1


@pytest.mark.parametrize(("model", "status", "param"), [("nope", 404, "model"), ("chat", 404, "model")])
def test_only_embedding_models(model: str, status: int, param: str) -> None:
    with pytest.raises(GatewayError) as caught:
        plan(CONFIG, EmbeddingRequest(model, ["x"]))
    assert (caught.value.status, caught.value.param) == (status, param)


def test_token_arrays_only_where_every_upstream_takes_them() -> None:
    assert plan(CONFIG, EmbeddingRequest("mixed", [[1, 2]]))[1][0].inputs == [[1, 2]]
    with pytest.raises(GatewayError) as caught:
        plan(CONFIG, EmbeddingRequest("google", ["ok", [1, 2]]), "requests")
    assert caught.value.param == "requests" and "gemini" in caught.value.message


def test_join_keeps_order_and_sums_usage() -> None:
    a = EmbeddingComplete(EmbeddingResponse("e", [[1.0], [2.0]], 3))
    b = EmbeddingComplete(EmbeddingResponse("e", ["AACAPw=="], 2, usage_known=False))
    joined = join("public", [a, b])
    assert joined.vectors == [[1.0], [2.0], "AACAPw=="] and joined.input_tokens == 5
    assert joined.model == "public" and not joined.usage_known


def test_answer_of_a_record_entry() -> None:
    done = EmbeddingComplete(EmbeddingResponse("e", [[1.0]], 1))
    assert answer_of(encode_events([done])) == done  # type: ignore[list-item]
    failed = encode_events([StreamError(ErrorInfo("upstream_rejected", "no", 400))])
    with pytest.raises(GatewayError) as caught:
        answer_of(failed)
    assert caught.value.status == 400
