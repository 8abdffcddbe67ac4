"""`/v1/embeddings` lines in an OpenAI batch, end to end through the official openai SDK against
the running system (API, batch coordinator and workers as processes, the private Redis, the
mock provider). Accounts take 3 inputs per call, so a line with a longer list runs as several
upstream calls (one job per part) and comes back as one answer in OpenAI's shape."""

from __future__ import annotations

import base64
import math
import struct
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from shared.mock.embeddings import vector
from tests.batches.helpers import (
    chat_line,
    embedding_line,
    embedding_model,
    jsonl,
    openai_client,
    results,
    wait_for_status,
)
from tests.conftest import SluiceSystem, two_account_model

PER_CALL = 3
DIMS = 8


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[SluiceSystem]:
    accounts, models = two_account_model()
    models.append(embedding_model(accounts, PER_CALL))
    running = SluiceSystem(tmp_path_factory.mktemp("emb-batches"), redis_url, accounts=accounts, models=models,
                           batchers=1)
    running.mock_config(embedding_dimensions=DIMS)
    yield running
    running.close()


def inputs_of(i: int) -> str | list[str]:
    """Every third line a single text; the others lists of 1 to 8 texts (up to 3 parts)."""
    return f"text {i}" if i % 3 == 0 else [f"text {i}.{k}" for k in range(1 + i % 8)]


def floats(item: Any) -> list[float]:
    if isinstance(item, str):
        raw = base64.b64decode(item)
        return list(struct.unpack(f"<{len(raw) // 4}f", raw))
    return list(item)


def test_embedding_lines_run_split_and_joined_in_openai_shape(system: SluiceSystem) -> None:
    api = openai_client(system)
    n = 24
    lines = [embedding_line(f"e{i}", inputs_of(i), **({"encoding_format": "base64"} if i % 4 == 1 else {}))
             for i in range(n)]
    calls = sum(math.ceil((1 if isinstance(x, str) else len(x)) / PER_CALL) for x in map(inputs_of, range(n)))
    assert calls > n  # some lines split: the point of the test
    before = system.mock_stats()["requests"]
    uploaded = api.files.create(file=("emb.jsonl", jsonl(lines)), purpose="batch")
    batch = api.batches.create(input_file_id=uploaded.id, endpoint="/v1/embeddings", completion_window="24h")
    assert batch.endpoint == "/v1/embeddings"
    done = wait_for_status(api, batch.id, ("completed", "failed"))
    assert done.status == "completed", done.errors
    assert done.request_counts is not None
    assert (done.request_counts.total, done.request_counts.completed, done.request_counts.failed) == (n, n, 0)
    out = results(api, done.output_file_id)
    assert Counter(r["custom_id"] for r in out) == Counter(f"e{i}" for i in range(n))  # each exactly once
    for r in out:
        i = int(r["custom_id"][1:])
        texts = inputs_of(i)
        texts = [texts] if isinstance(texts, str) else texts
        assert r["error"] is None and r["response"]["status_code"] == 200
        body = r["response"]["body"]
        assert body["object"] == "list" and body["model"] == "embed"
        assert [d["index"] for d in body["data"]] == list(range(len(texts)))
        assert all(d["object"] == "embedding" for d in body["data"])
        if i % 4 == 1:  # asked for base64: every vector is a base64 string
            assert all(isinstance(d["embedding"], str) for d in body["data"])
        # the mock's vectors for these very texts, joined in input order across parts
        assert [floats(d["embedding"]) for d in body["data"]] == [vector(t, DIMS) for t in texts]
        assert body["usage"]["prompt_tokens"] == body["usage"]["total_tokens"] > 0
    assert system.mock_stats()["requests"] - before == calls  # every part called upstream once
    usage = done.usage
    assert usage is not None and usage.output_tokens == 0
    assert usage.input_tokens == sum(r["response"]["body"]["usage"]["prompt_tokens"] for r in out)


def test_a_batch_holds_one_endpoint_and_embedding_lines_are_checked_per_line(system: SluiceSystem) -> None:
    api = openai_client(system)
    content = jsonl([
        embedding_line("ok", ["a", "b"]),
        chat_line("chat-in-embeddings-batch"),  # line 2: another endpoint
        embedding_line("chat-model", "x", model="test-model"),  # line 3: not an embedding model
        embedding_line("empty", []),  # line 4
        embedding_line("nope", "x", model="nope"),  # line 5
        embedding_line("ok", "dup"),  # line 6
    ])
    uploaded = api.files.create(file=("bad-emb.jsonl", content), purpose="batch")
    batch = api.batches.create(input_file_id=uploaded.id, endpoint="/v1/embeddings", completion_window="24h")
    failed = wait_for_status(api, batch.id, ("failed", "completed"))
    assert failed.status == "failed" and failed.errors is not None
    errors = {e.line: e for e in failed.errors.data or []}
    assert {line: e.code for line, e in errors.items()} == {
        2: "mismatched_url", 3: "model_not_found", 4: "invalid_request", 5: "model_not_found",
        6: "duplicate_custom_id"}
    assert "/v1/embeddings" in (errors[2].message or "") and errors[2].param == "url"
    assert errors[3].param == "body.model" and errors[4].param == "body.input"

    # and the other way round: an embeddings line in a chat batch, an embedding model in a chat line
    content = jsonl([chat_line("c1"), embedding_line("e1", "x"), chat_line("c2", model="embed")])
    uploaded = api.files.create(file=("bad-chat.jsonl", content), purpose="batch")
    batch = api.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h")
    failed = wait_for_status(api, batch.id, ("failed", "completed"))
    assert failed.errors is not None
    assert {e.line: e.code for e in failed.errors.data or []} == {2: "mismatched_url", 3: "model_not_found"}


def test_a_failed_part_fails_its_line_once_and_the_rest_of_the_batch_completes(system: SluiceSystem) -> None:
    api = openai_client(system)
    # the second of three parts is refused by the upstream (a 400 is not retried)
    doomed = ["a", "b", "c", "x-mock-fail: 400", "e", "f", "g"]
    lines = [embedding_line("fine-1", ["p", "q", "r", "s"]), embedding_line("doomed", doomed),
             embedding_line("fine-2", "t")]
    uploaded = api.files.create(file=("part-fails.jsonl", jsonl(lines)), purpose="batch")
    batch = api.batches.create(input_file_id=uploaded.id, endpoint="/v1/embeddings", completion_window="24h")
    done = wait_for_status(api, batch.id, ("completed", "failed"))
    assert done.status == "completed" and done.request_counts is not None
    assert (done.request_counts.completed, done.request_counts.failed) == (2, 1)
    out, err = results(api, done.output_file_id), results(api, done.error_file_id)
    assert sorted(r["custom_id"] for r in out) == ["fine-1", "fine-2"]
    assert [r["custom_id"] for r in err] == ["doomed"]
    failure = err[0]["response"]
    assert failure["status_code"] == 400 and failure["body"]["error"]["message"]
