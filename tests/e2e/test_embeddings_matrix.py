"""Embeddings through the running system, driven by the openai and google-genai SDKs.

Every client x every embedding upstream (openai, gemini, mistral, openai-compatible), float and
base64, one input and a list: the vectors a client gets must equal, bit for bit, what the mock
upstream returns when called directly in its own dialect with the same input. The mock is strict
per dialect (Mistral refuses unknown fields, Gemini wants its batch shape and model names), so a
conversion bug fails here.
"""

from __future__ import annotations

import base64
import struct
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from google import genai
from google.genai import types

from tests.conftest import CLIENT_KEY, SluiceSystem

UPSTREAMS = ["openai", "gemini", "mistral", "compat"]
TEXTS = ["The quick brown fox", "jumps over the lazy dog", "and keeps running into the forest at dusk"]
UPSTREAM_MODEL = "mock-embed"
# google-genai sends a list as ONE multi-part content to models whose name holds "gemini" (it takes
# them for multimodal embedders), so the public names here avoid the word.
MODEL = {"openai": "emb-openai", "gemini": "emb-google", "mistral": "emb-mistral", "compat": "emb-compat"}


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[SluiceSystem]:
    placeholder = "http://MOCK"
    accounts = [
        {"name": "up-openai", "provider": "openai", "api_key": "mock-key", "base_url": f"{placeholder}/v1"},
        {"name": "up-gemini", "provider": "gemini", "api_key": "mock-key", "base_url": placeholder},
        {"name": "up-mistral", "provider": "mistral", "api_key": "mock-key", "base_url": f"{placeholder}/mistral/v1"},
        {"name": "up-compat", "provider": "openai-compatible", "api_key": "mock-key", "base_url": f"{placeholder}/v1"},
        # a small server: at most 3 inputs per call (the mock is told the same below)
        {"name": "up-small", "provider": "openai-compatible", "api_key": "mock-key", "base_url": f"{placeholder}/v1",
         "max_embedding_inputs": 3},
        {"name": "up-chat", "provider": "openai", "api_key": "mock-key", "base_url": f"{placeholder}/v1"},
    ]
    models: list[dict[str, Any]] = [
        {"name": MODEL[u], "kind": "embedding", "route": [{"account": f"up-{u}", "model": UPSTREAM_MODEL}]}
        for u in UPSTREAMS]
    models.append({"name": "emb-small", "kind": "embedding",
                   "route": [{"account": "up-small", "model": UPSTREAM_MODEL}]})
    models.append({"name": "chat-model", "route": [{"account": "up-chat", "model": "mock-small"}]})
    running = SluiceSystem(tmp_path_factory.mktemp("embeddings"), redis_url, accounts=accounts, models=models,
                           base_url_placeholder=placeholder, mock_args=["--api-key", "mock-key"])
    yield running
    running.close()


# --- the mock, called directly in each upstream's own dialect --------------------------------


def direct(system: SluiceSystem, upstream: str, inputs: list[Any], *, dimensions: int | None = None,
           task_type: str | None = None) -> list[list[float]]:
    """Float vectors from the mock, asked the way that upstream is asked."""
    auth = {"authorization": "Bearer mock-key"}
    if upstream == "gemini":
        requests: list[dict[str, Any]] = []
        for text in inputs:
            one: dict[str, Any] = {"model": f"models/{UPSTREAM_MODEL}", "content": {"parts": [{"text": text}]}}
            if dimensions:
                one["outputDimensionality"] = dimensions
            if task_type:
                one["taskType"] = task_type
            requests.append(one)
        reply = httpx.post(f"{system.mock_url}/v1beta/models/{UPSTREAM_MODEL}:batchEmbedContents",
                           json={"requests": requests}, headers={"x-goog-api-key": "mock-key"})
        reply.raise_for_status()
        return [e["values"] for e in reply.json()["embeddings"]]
    body: dict[str, Any] = {"model": UPSTREAM_MODEL, "input": inputs}
    path = "/mistral/v1/embeddings" if upstream == "mistral" else "/v1/embeddings"
    if dimensions:
        body["output_dimension" if upstream == "mistral" else "dimensions"] = dimensions
    reply = httpx.post(f"{system.mock_url}{path}", json=body, headers=auth)
    reply.raise_for_status()
    return [d["embedding"] for d in sorted(reply.json()["data"], key=lambda d: d["index"])]


def floats_of(b64: str) -> list[float]:
    raw = base64.b64decode(b64)
    return list(struct.unpack(f"<{len(raw) // 4}f", raw))


def _openai(system: SluiceSystem, strict: bool = True) -> openai.OpenAI:
    # The SDK types `embedding` as floats, so its strict mode refuses the base64 strings that
    # `encoding_format="base64"` returns (from OpenAI itself too): those calls run unstrict.
    return openai.OpenAI(base_url=f"{system.base_url}/v1", api_key=CLIENT_KEY, max_retries=0,
                         _strict_response_validation=strict)


def _gemini(system: SluiceSystem) -> genai.Client:
    return genai.Client(api_key=CLIENT_KEY, http_options=types.HttpOptions(base_url=system.base_url))


# --- the matrix ------------------------------------------------------------------------------


@pytest.mark.parametrize("upstream", UPSTREAMS)
@pytest.mark.parametrize("encoding", ["float", "base64"])
@pytest.mark.parametrize("shape", ["single", "list"])
def test_openai_sdk(system: SluiceSystem, upstream: str, encoding: str, shape: str) -> None:
    inputs = TEXTS[:1] if shape == "single" else TEXTS
    given: Any = inputs[0] if shape == "single" else inputs
    reply = _openai(system, encoding == "float").embeddings.create(model=MODEL[upstream], input=given,
                                              encoding_format=encoding)  # type: ignore[arg-type]
    assert reply.object == "list" and reply.model == MODEL[upstream]
    assert [d.index for d in reply.data] == list(range(len(inputs)))
    got = [floats_of(d.embedding) if encoding == "base64" else d.embedding for d in reply.data]  # type: ignore[arg-type]
    if encoding == "base64":
        assert all(isinstance(d.embedding, str) for d in reply.data)
    assert got == direct(system, upstream, inputs)
    assert reply.usage.prompt_tokens == sum(max(1, -(-len(t) // 4)) for t in inputs)


@pytest.mark.parametrize("upstream", UPSTREAMS)
@pytest.mark.parametrize("shape", ["single", "list"])
def test_google_genai_sdk(system: SluiceSystem, upstream: str, shape: str) -> None:
    inputs = TEXTS[:1] if shape == "single" else TEXTS
    contents: Any = inputs[0] if shape == "single" else inputs
    client = _gemini(system)  # held: a client collected mid-call closes its connection pool
    reply = client.models.embed_content(model=MODEL[upstream], contents=contents)
    assert [e.values for e in reply.embeddings or []] == direct(system, upstream, inputs)


def test_openai_sdk_default_decodes_base64_to_the_same_floats(system: SluiceSystem) -> None:
    # Without encoding_format the SDK asks for base64 and decodes it itself (after validating
    # the raw strings against its float type, so not in strict mode).
    reply = _openai(system, strict=False).embeddings.create(model=MODEL["gemini"], input=TEXTS)
    assert [d.embedding for d in reply.data] == direct(system, "gemini", TEXTS)


def test_base64_is_the_upstreams_own_bytes(system: SluiceSystem) -> None:
    reply = _openai(system, strict=False).embeddings.create(model="emb-openai", input=TEXTS,
                                                            encoding_format="base64")
    own = httpx.post(f"{system.mock_url}/v1/embeddings", headers={"authorization": "Bearer mock-key"},
                     json={"model": UPSTREAM_MODEL, "input": TEXTS, "encoding_format": "base64"}).json()
    assert [d.embedding for d in reply.data] == [d["embedding"] for d in own["data"]]


def test_dimensions_and_task_type_reach_the_upstream(system: SluiceSystem) -> None:
    reply = _openai(system).embeddings.create(model="emb-mistral", input=TEXTS[0], dimensions=8,
                                              encoding_format="float")
    assert [reply.data[0].embedding] == direct(system, "mistral", TEXTS[:1], dimensions=8)
    assert len(reply.data[0].embedding) == 8
    config = types.EmbedContentConfig(task_type="RETRIEVAL_QUERY", output_dimensionality=12)
    client = _gemini(system)
    got = client.models.embed_content(model=MODEL["gemini"], contents=TEXTS[1], config=config)
    want = direct(system, "gemini", TEXTS[1:2], dimensions=12, task_type="RETRIEVAL_QUERY")
    assert [e.values for e in got.embeddings or []] == want
    assert want != direct(system, "gemini", TEXTS[1:2], dimensions=12)  # the task type mattered


def test_token_arrays_go_to_upstreams_that_take_them(system: SluiceSystem) -> None:
    tokens = [[15339, 1917], [791, 4062, 14198]]
    reply = _openai(system).embeddings.create(model="emb-compat", input=tokens, encoding_format="float")
    assert [d.embedding for d in reply.data] == direct(system, "compat", tokens)
    assert reply.usage.prompt_tokens == 5


def test_a_long_list_is_split_into_calls_the_upstream_takes(system: SluiceSystem) -> None:
    system.mock_config(max_embedding_inputs=3)  # the mock now refuses a 4th input in one call
    try:
        texts = [f"document number {i} of the corpus" for i in range(8)]
        before = system.mock_stats()["requests"]
        completed = system.counter("up-small", "completed")
        raw = _openai(system).embeddings.with_raw_response.create(model="emb-small", input=texts,
                                                                  encoding_format="float")
        reply = raw.parse()
        assert raw.headers["x-sluice-upstream-calls"] == "3"
        assert "upstream;dur=" in raw.headers["server-timing"]  # the slowest part's timing
        assert system.mock_stats()["requests"] - before == 3  # 3 + 3 + 2
        assert system.counter("up-small", "completed") - completed == 3  # each part a job of its own
        want = direct(system, "compat", texts[:3]) + direct(system, "compat", texts[3:6]) + \
            direct(system, "compat", texts[6:])
        assert [d.embedding for d in reply.data] == want
        assert [d.index for d in reply.data] == list(range(8))
        with pytest.raises(httpx.HTTPStatusError):  # the mock really refuses the whole list at once
            direct(system, "compat", texts)
    finally:
        system.mock_config(max_embedding_inputs=2048)


# --- errors, in each client's own protocol, before any upstream call -------------------------


def _openai_error(system: SluiceSystem, model: str, given: Any, key: str = CLIENT_KEY) -> openai.APIStatusError:
    client = openai.OpenAI(base_url=f"{system.base_url}/v1", api_key=key, max_retries=0)
    with pytest.raises(openai.APIStatusError) as caught:
        client.embeddings.create(model=model, input=given, encoding_format="float")
    return caught.value


def _gemini_error(system: SluiceSystem, model: str, method: str, body: Any,
                  key: str = CLIENT_KEY) -> tuple[int, dict[str, Any]]:
    reply = httpx.post(f"{system.base_url}/v1beta/models/{model}:{method}", json=body,
                       headers={"x-goog-api-key": key})
    return reply.status_code, reply.json()["error"]


@pytest.mark.parametrize(("model", "given", "status", "param", "says"), [
    ("emb-openai", "", 400, "input", "empty"),
    ("emb-openai", [], 400, "input", "empty"),
    ("emb-openai", ["fine", ""], 400, "input[1]", "empty"),
    ("emb-openai", ["x"] * 2049, 400, "input", "at most 2048"),
    ("emb-mistral", [[1, 2, 3]], 400, "input", "text only"),
    ("emb-google", [1, 2, 3], 400, "input", "text only"),
    ("no-such-model", "hello", 404, "model", "does not exist"),
    ("chat-model", "hello", 404, "model", "not an embedding model"),
])
def test_openai_errors(system: SluiceSystem, model: str, given: Any, status: int, param: str, says: str) -> None:
    before = system.mock_stats()["requests"]
    err = _openai_error(system, model, given)
    assert err.status_code == status
    body: Any = err.body
    assert body["param"] == param and says in body["message"]
    assert body["type"] == "invalid_request_error"  # OpenAI types an unknown model so too
    assert system.mock_stats()["requests"] == before  # refused before it cost an upstream call


def test_openai_unknown_key_is_401(system: SluiceSystem) -> None:
    assert _openai_error(system, "emb-openai", "hello", key="sk-wrong").status_code == 401


def test_an_embedding_model_is_not_a_chat_model(system: SluiceSystem) -> None:
    with pytest.raises(openai.NotFoundError):
        _openai(system).chat.completions.create(model="emb-openai", messages=[{"role": "user", "content": "hi"}])


@pytest.mark.parametrize(("model", "method", "body", "status", "field"), [
    ("emb-openai", "embedContent", {"content": {"parts": [{"text": ""}]}}, 400, "content.parts"),
    ("emb-openai", "embedContent", {"content": {"parts": [{"inlineData": {"mimeType": "image/png", "data": "AA=="}}]}},
     400, "content.parts[0]"),
    ("emb-openai", "batchEmbedContents", {"requests": []}, 400, "requests"),
    ("emb-openai", "batchEmbedContents",
     {"requests": [{"model": "models/emb-openai", "content": {"parts": [{"text": "x"}]}}] * 2049}, 400, "requests"),
    ("emb-openai", "batchEmbedContents",
     {"requests": [{"model": "models/other", "content": {"parts": [{"text": "x"}]}}]}, 400, "requests[0].model"),
    ("nope", "embedContent", {"content": {"parts": [{"text": "x"}]}}, 404, "model"),
    ("chat-model", "embedContent", {"content": {"parts": [{"text": "x"}]}}, 404, "model"),
])
def test_gemini_errors(system: SluiceSystem, model: str, method: str, body: Any, status: int, field: str) -> None:
    got, error = _gemini_error(system, model, method, body)
    assert got == status and error["code"] == status
    violations = [v["field"] for d in error.get("details", []) for v in d.get("fieldViolations", [])]
    assert violations == [field], error


def test_gemini_unknown_key_is_401_in_gemini_shape(system: SluiceSystem) -> None:
    status, error = _gemini_error(system, "emb-openai", "embedContent", {"content": {"parts": [{"text": "x"}]}},
                                  key="wrong")
    assert status == 401 and error["status"] == "UNAUTHENTICATED"


def test_a_failing_part_fails_the_request_in_the_clients_protocol(system: SluiceSystem) -> None:
    texts = ["one", "two", "three", "x-mock-fail: 400", "five", "six", "seven"]  # the 2nd of 3 parts fails
    err = _openai_error(system, "emb-small", texts)
    assert err.status_code == 400 and "400" in str(err.body)
    status, error = _gemini_error(system, "emb-small", "batchEmbedContents", {"requests": [
        {"model": "models/emb-small", "content": {"parts": [{"text": t}]}} for t in texts]})
    assert status == 400 and error["status"] == "INVALID_ARGUMENT"


def test_gemini_model_list_says_which_models_embed(system: SluiceSystem) -> None:
    client = _gemini(system)
    actions = {m.name: m.supported_actions for m in client.models.list()}
    assert actions["models/emb-google"] == ["embedContent", "batchEmbedContents"]
    assert actions["models/chat-model"] == ["generateContent", "streamGenerateContent"]
