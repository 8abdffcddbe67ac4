"""The surfaces that came after tenancy, under the same guards, through real processes and the
official SDKs: isolation of files, batches and stored Responses by the tenant a key carries
(keys issued at run time included), tenant admission and settling on embeddings and on the
Ollama routes, the admin API's batch list, and hostile-input bounds on embeddings, stored
Responses, Ollama, file uploads and batch bodies and lines."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import anthropic
import httpx
import openai
import pytest

from shared.tenants.policy import period_id
from tests.conftest import SluiceSystem, wait_until
from tests.e2e.raw_http import read_answer

ADMIN = "guarded-admin-token-0123456789"
LIMITS = {"max_body_bytes": 65536, "max_messages": 8, "max_content_parts": 12, "max_string_chars": 4000}
BATCHES = {"max_bytes": 100_000, "anthropic_max_bytes": 100_000, "gemini_max_inline_bytes": 100_000}
TENANTS = [
    {"name": "acme", "models": ["m", "e"], "budget": {"period": "day", "tokens": 10_000_000}},
    {"name": "slow", "rpm": 1},
    {"name": "narrow", "models": ["n"]},
]
CONFIG_KEYS = {"slow": "sk-guarded-slow", "narrow": "sk-guarded-narrow"}


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[SluiceSystem]:
    mp = pytest.MonkeyPatch()
    mp.setenv("SLUICE_ADMIN_TOKEN", ADMIN)
    mp.setenv("SLUICE_KEY_SECRET", "guarded-key-secret-0123456789")
    models = [{"name": "m", "route": [{"account": "acct", "model": "mock-small"}]},
              {"name": "n", "route": [{"account": "acct", "model": "mock-small"}]},
              {"name": "e", "kind": "embedding", "route": [{"account": "acct", "model": "mock-embed"}]}]
    extra = {"client_keys": [{"name": n, "key": k} for n, k in CONFIG_KEYS.items()], "tenants": TENANTS,
             "request_limits": LIMITS}
    made = SluiceSystem(tmp_path_factory.mktemp("guarded"), redis_url, [{"name": "acct"}], models,
                        batchers=1, batches=BATCHES, extra=extra)
    yield made
    made.close()
    mp.undo()


def _admin(system: SluiceSystem, method: str, path: str, **kwargs: Any) -> httpx.Response:
    return httpx.request(method, f"{system.base_url}{path}", headers={"authorization": f"Bearer {ADMIN}"},
                         timeout=30, **kwargs)


def _new_key(system: SluiceSystem, tenant: str) -> str:
    made = _admin(system, "POST", "/admin/keys", json={"tenant": tenant})
    assert made.status_code == 201, made.text
    key: str = made.json()["key"]
    # effective on the API process within a second (keysync): poll until the key is taken
    wait_until(lambda: httpx.get(f"{system.base_url}/v1/models", headers={"authorization": f"Bearer {key}"},
                                 timeout=10).status_code == 200, timeout=5)
    return key


def _oai(system: SluiceSystem, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{system.base_url}/v1", api_key=key, max_retries=0, timeout=30)


def _post(system: SluiceSystem, path: str, key: str, body: Any) -> httpx.Response:
    return httpx.post(f"{system.base_url}{path}", json=body, timeout=30,
                      headers={"authorization": f"Bearer {key}", "x-api-key": key, "anthropic-version": "2023-06-01"})


@pytest.fixture(scope="module")
def keys(system: SluiceSystem) -> dict[str, str]:
    """Keys issued at run time: two for one tenant, one for a rival."""
    return {"acme": _new_key(system, "acme"), "acme2": _new_key(system, "acme"), "rival": _new_key(system, "rival"),
            **CONFIG_KEYS}


def _turns(n: int) -> list[dict[str, str]]:
    """n alternating turns (same-role neighbours would merge into one message), the last a user's."""
    return [{"role": "user" if (n - i) % 2 else "assistant", "content": "hi"} for i in range(n)]


def _line(custom_id: str, messages: int = 1) -> bytes:
    body = {"model": "m", "messages": _turns(messages), "max_tokens": 4}
    return json.dumps({"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions",
                       "body": body}).encode() + b"\n"


def test_files_batches_and_stored_responses_belong_to_the_tenant_not_the_key(
        system: SluiceSystem, keys: dict[str, str]) -> None:
    owner, sibling, rival = _oai(system, keys["acme"]), _oai(system, keys["acme2"]), _oai(system, keys["rival"])
    uploaded = owner.files.create(file=("in.jsonl", _line("a") + _line("b")), purpose="batch")
    batch = owner.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h")
    stored = owner.responses.create(model="m", input="remember this", max_output_tokens=8)
    anth = anthropic.Anthropic(base_url=system.base_url, api_key=keys["acme"], max_retries=0)
    message_batch = anth.messages.batches.create(requests=[{"custom_id": "a", "params": {
        "model": "m", "max_tokens": 4, "messages": [{"role": "user", "content": "hi"}]}}])

    # another key of the same tenant sees all of it
    assert sibling.files.retrieve(uploaded.id).id == uploaded.id
    assert sibling.batches.retrieve(batch.id).id == batch.id
    assert sibling.responses.retrieve(stored.id).id == stored.id
    chained = sibling.responses.create(model="m", input="and now?", previous_response_id=stored.id, max_output_tokens=8)
    assert chained.previous_response_id == stored.id

    # another tenant gets the 404 a made-up id gets, for every one of them
    stranger = anthropic.Anthropic(base_url=system.base_url, api_key=keys["rival"], max_retries=0)
    for call in (lambda: rival.files.retrieve(uploaded.id), lambda: rival.files.content(uploaded.id),
                 lambda: rival.batches.retrieve(batch.id), lambda: rival.batches.cancel(batch.id),
                 lambda: rival.responses.retrieve(stored.id), lambda: rival.responses.delete(stored.id),
                 lambda: rival.responses.input_items.list(stored.id),
                 lambda: rival.responses.create(model="m", input="x", previous_response_id=stored.id),
                 lambda: stranger.messages.batches.retrieve(message_batch.id)):
        with pytest.raises((openai.NotFoundError, anthropic.NotFoundError)):
            call()
    assert sibling.responses.retrieve(stored.id).id == stored.id  # the rival's delete did nothing

    # the admin API lists batches with their tenant; filtered by tenant, only that tenant's
    listed = _admin(system, "GET", "/admin/batches")
    assert listed.status_code == 200, listed.text
    tenants = {b["id"]: b["tenant"] for b in listed.json()}
    assert tenants[batch.id.removeprefix("batch_")] == "acme"
    assert tenants[message_batch.id.removeprefix("msgbatch_")] == "acme"
    assert _admin(system, "GET", "/admin/batches", params={"tenant": "rival"}).json() == []
    assert httpx.get(f"{system.base_url}/admin/batches", timeout=10).status_code == 401


def test_ollama_routes_use_the_same_auth_and_tenant_admission(system: SluiceSystem, keys: dict[str, str]) -> None:
    base = system.base_url
    chat = {"model": "n", "messages": [{"role": "user", "content": "hi"}], "stream": False}
    for method, path, body in (("GET", "/api/tags", None), ("POST", "/api/show", {"model": "n"}),
                               ("POST", "/api/chat", chat)):
        assert httpx.request(method, f"{base}{path}", json=body, timeout=10).status_code == 401, path

    narrow = {"authorization": f"Bearer {keys['narrow']}"}
    tags = httpx.get(f"{base}/api/tags", headers=narrow, timeout=10).json()
    assert [m["name"] for m in tags["models"]] == ["n"]  # the tenant's models only
    assert httpx.post(f"{base}/api/show", json={"model": "m"}, headers=narrow, timeout=10).status_code == 404
    refused = httpx.post(f"{base}/api/chat", json={**chat, "model": "m"}, headers=narrow, timeout=30)
    assert refused.status_code == 404 and "error" in refused.json()
    assert httpx.post(f"{base}/api/chat", json=chat, headers=narrow, timeout=30).status_code == 200

    slow = {"authorization": f"Bearer {keys['slow']}"}
    answers = [httpx.post(f"{base}/api/chat", json={**chat, "model": "m"}, headers=slow, timeout=30) for _ in range(3)]
    limited = [a for a in answers if a.status_code == 429]
    assert limited, [a.status_code for a in answers]  # rpm 1 (a minute's worth may come at once)
    assert int(limited[0].headers["retry-after"]) >= 1 and "error" in limited[0].json()


def test_embeddings_go_through_tenant_admission_and_are_settled(system: SluiceSystem, keys: dict[str, str]) -> None:
    with pytest.raises(openai.NotFoundError):  # a model outside the tenant's list does not exist for it
        _oai(system, keys["narrow"]).embeddings.create(model="e", input="hi")

    slow = _oai(system, keys["slow"])
    outcomes = []
    for _ in range(3):
        try:
            slow.embeddings.create(model="e", input="hi")
            outcomes.append(200)
        except openai.RateLimitError:
            outcomes.append(429)
    assert 429 in outcomes, outcomes

    usage_key = f"{system.prefix}:{{tenant:acme}}:usage"
    field = f"{period_id('day', time.time())}:t"
    before = float(system.redis.hget(usage_key, field) or 0)  # type: ignore[arg-type]
    answer = _oai(system, keys["acme"]).embeddings.create(model="e", input=["alpha beta", "gamma"])
    assert len(answer.data) == 2
    # settled in the background with what the parts used: the reservation becomes the real count
    held = f"{system.prefix}:{{tenant:acme}}:held"
    wait_until(lambda: system.redis.zcard(held) == 0, timeout=10)
    spent = float(system.redis.hget(usage_key, field) or 0) - before  # type: ignore[arg-type]
    assert spent == answer.usage.prompt_tokens


def _declared_huge(system: SluiceSystem, path: str, key: str, content_type: str = "application/json") -> bytes:
    url = urlsplit(system.base_url)
    with socket.create_connection((url.hostname, url.port), timeout=10) as sock:
        sock.sendall(f"POST {path} HTTP/1.1\r\nhost: x\r\ncontent-type: {content_type}\r\n"
                     f"authorization: Bearer {key}\r\nx-api-key: {key}\r\nanthropic-version: 2023-06-01\r\n"
                     f"content-length: 67108864\r\n\r\n{{".encode())
        return read_answer(sock)  # the answer comes while 64 MiB are still unsent


@pytest.mark.parametrize("path", ["/v1/embeddings", "/v1beta/models/e:embedContent", "/v1/responses", "/api/chat",
                                  "/api/show", "/v1/batches", "/v1/messages/batches",
                                  "/v1beta/models/m:batchGenerateContent", "/v1/files"])
def test_a_declared_huge_body_is_refused_before_it_is_read(system: SluiceSystem, keys: dict[str, str],
                                                           path: str) -> None:
    kind = "multipart/form-data; boundary=x" if path == "/v1/files" else "application/json"
    answer = _declared_huge(system, path, keys["acme"], kind)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:300]


def test_embedding_inputs_are_bounded(system: SluiceSystem, keys: dict[str, str]) -> None:
    key = keys["acme"]
    for body, field in (({"model": "e", "input": ["x"] * 13}, "input"),
                        ({"model": "e", "input": "x" * 4001}, "input"),
                        ({"model": "e", "input": "x", "dimensions": 10**9}, "dimensions")):
        answer = _post(system, "/v1/embeddings", key, body)
        assert answer.status_code == 400 and answer.json()["error"]["param"] == field, answer.text
    many = {"requests": [{"model": "models/e", "content": {"parts": [{"text": "x"}]}}] * 13}
    answer = _post(system, "/v1beta/models/e:batchEmbedContents", key, many)
    assert answer.status_code == 400 and "Too many inputs" in answer.json()["error"]["message"], answer.text


def test_stored_responses_and_ollama_chat_get_the_request_bounds(system: SluiceSystem, keys: dict[str, str]) -> None:
    long_text = "x" * 4001
    answer = _post(system, "/v1/responses", keys["acme"], {"model": "m", "input": long_text})
    assert answer.status_code == 400 and answer.json()["error"]["param"] == "messages", answer.text
    answer = _post(system, "/api/chat", keys["acme"],
                   {"model": "m", "messages": _turns(9), "stream": False})
    assert answer.status_code == 400 and "Too many messages" in answer.json()["error"], answer.text


def test_batch_lines_get_the_request_bounds_and_the_tenants_models(system: SluiceSystem,
                                                                   keys: dict[str, str]) -> None:
    params: dict[str, Any] = {"model": "m", "max_tokens": 4, "messages": _turns(9)}
    answer = _post(system, "/v1/messages/batches", keys["acme"], {"requests": [{"custom_id": "a", "params": params}]})
    assert answer.status_code == 400 and "Too many messages" in answer.json()["error"]["message"], answer.text
    params["messages"] = params["messages"][:1]
    answer = _post(system, "/v1/messages/batches", keys["narrow"], {"requests": [{"custom_id": "a", "params": params}]})
    assert answer.status_code == 400 and "does not exist" in answer.json()["error"]["message"], answer.text

    # an OpenAI file batch is validated by the coordinator: the line's bound is its error, by line number
    client = _oai(system, keys["acme"])
    uploaded = client.files.create(file=("in.jsonl", _line("ok") + _line("long", messages=9)), purpose="batch")
    batch = client.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h")
    wait_until(lambda: client.batches.retrieve(batch.id).status == "failed", timeout=20)
    errors = client.batches.retrieve(batch.id).errors
    assert errors is not None and errors.data is not None
    assert [(e.line, e.code) for e in errors.data] == [(2, "invalid_request")]


def test_choice_counts_are_bounded(system: SluiceSystem, keys: dict[str, str]) -> None:
    answer = _post(system, "/v1/chat/completions", keys["acme"],
                   {"model": "m", "messages": [{"role": "user", "content": "hi"}], "n": 10**9})
    assert answer.status_code == 400 and answer.json()["error"]["param"] == "n", answer.text
    answer = _post(system, "/v1beta/models/m:generateContent", keys["acme"],
                   {"contents": [{"parts": [{"text": "hi"}]}], "generationConfig": {"candidateCount": 10**6}})
    assert answer.status_code == 400 and "candidateCount" in answer.text, answer.text
