"""OpenAI Files + Batches end to end, through the official openai SDK against the running system:
API, batch coordinator and workers as processes, the private Redis, the mock provider."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import openai
import pytest

from tests.batches.helpers import chat_line, jsonl, openai_client, results, wait_for_status
from tests.conftest import CLIENT_KEY, OTHER_CLIENT_KEY, SluiceSystem, two_account_model


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[SluiceSystem]:
    accounts, models = two_account_model()
    running = SluiceSystem(tmp_path_factory.mktemp("batches"), redis_url, accounts=accounts, models=models,
                           batchers=1, batches={"max_lines": 60})
    yield running
    running.close()


def test_a_batch_runs_end_to_end_with_the_openai_sdk(system: SluiceSystem) -> None:
    api = openai_client(system)
    lines = [chat_line(f"req-{i}", text=f"line {i}") for i in range(40)]
    uploaded = api.files.create(file=("input.jsonl", jsonl(lines)), purpose="batch")
    assert uploaded.purpose == "batch" and uploaded.bytes == len(jsonl(lines))
    batch = api.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions",
                               completion_window="24h", metadata={"run": "e2e"})
    assert batch.status == "validating" and batch.metadata == {"run": "e2e"}
    done = wait_for_status(api, batch.id, ("completed", "failed"))
    assert done.status == "completed", done.errors
    assert done.request_counts is not None
    assert (done.request_counts.total, done.request_counts.completed, done.request_counts.failed) == (40, 40, 0)
    assert done.in_progress_at and done.finalizing_at and done.completed_at and done.error_file_id is None
    out = results(api, done.output_file_id)
    assert sorted(r["custom_id"] for r in out) == sorted(f"req-{i}" for i in range(40))
    for r in out:
        assert r["error"] is None and r["response"]["status_code"] == 200
        assert r["response"]["body"]["object"] == "chat.completion"
        assert r["response"]["body"]["choices"][0]["message"]["content"]
    usage = done.usage
    assert usage is not None and usage.input_tokens > 0 and usage.output_tokens > 0
    assert usage.output_tokens == sum(r["response"]["body"]["usage"]["completion_tokens"] for r in out)
    listed = api.batches.list(limit=100)
    assert batch.id in [b.id for b in listed.data]
    assert done.output_file_id in [f.id for f in api.files.list().data]


def test_every_validation_error_names_its_line(system: SluiceSystem) -> None:
    api = openai_client(system)
    good = chat_line("ok-1")
    bad_url = {**chat_line("bad-url"), "url": "/v1/embeddings"}
    content = (jsonl([good]) + b"{not json\n" + jsonl([chat_line("ok-1"), bad_url, chat_line("m", model="nope"),
                                                       {"custom_id": "x", "method": "POST"}]))
    uploaded = api.files.create(file=("bad.jsonl", content), purpose="batch")
    batch = api.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h")
    failed = wait_for_status(api, batch.id, ("failed", "completed"))
    assert failed.status == "failed" and failed.failed_at
    assert failed.errors is not None
    by_line = {e.line: e.code for e in failed.errors.data or []}
    assert by_line == {2: "invalid_json_line", 3: "duplicate_custom_id", 4: "mismatched_url",
                       5: "model_not_found", 6: "invalid_line"}
    assert failed.output_file_id is None and failed.request_counts is not None


def test_too_many_lines_and_oversized_file(system: SluiceSystem) -> None:
    api = openai_client(system)
    uploaded = api.files.create(file=("big.jsonl", jsonl([chat_line(f"r{i}") for i in range(61)])), purpose="batch")
    batch = api.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h")
    failed = wait_for_status(api, batch.id, ("failed", "completed"))
    assert failed.errors is not None and [e.code for e in failed.errors.data or []] == ["too_many_requests"]


def test_create_refuses_bad_parameters_in_openai_shape(system: SluiceSystem) -> None:
    api = openai_client(system)
    uploaded = api.files.create(file=("in.jsonl", jsonl([chat_line("a")])), purpose="batch")
    with pytest.raises(openai.BadRequestError) as info:
        api.batches.create(input_file_id=uploaded.id, endpoint="/v1/completions", completion_window="24h")
    assert info.value.body["param"] == "endpoint"  # type: ignore[index]
    with pytest.raises(openai.BadRequestError) as info:
        api.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions",
                           completion_window="1h")  # type: ignore[arg-type]
    assert info.value.body["param"] == "completion_window"  # type: ignore[index]
    with pytest.raises(openai.NotFoundError):
        api.batches.create(input_file_id="file-doesnotexist", endpoint="/v1/chat/completions",
                           completion_window="24h")


def test_batches_and_files_belong_to_their_client_key(system: SluiceSystem) -> None:
    api = openai_client(system)
    uploaded = api.files.create(file=("in.jsonl", jsonl([chat_line("a")])), purpose="batch")
    batch = api.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h")
    stranger = openai_client(system, OTHER_CLIENT_KEY)
    for call in (lambda: stranger.batches.retrieve(batch.id), lambda: stranger.batches.cancel(batch.id),
                 lambda: stranger.files.retrieve(uploaded.id), lambda: stranger.files.content(uploaded.id),
                 lambda: stranger.files.delete(uploaded.id),
                 lambda: stranger.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions",
                                                 completion_window="24h")):
        with pytest.raises(openai.NotFoundError):
            call()
    assert batch.id not in [b.id for b in stranger.batches.list().data]
    assert uploaded.id not in [f.id for f in stranger.files.list().data]
    wait_for_status(api, batch.id, ("completed",))


def test_responses_endpoint_batch_and_file_lifecycle(system: SluiceSystem) -> None:
    api = openai_client(system)
    lines = [{"custom_id": f"r{i}", "method": "POST", "url": "/v1/responses",
              "body": {"model": "test-model", "input": f"hi {i}", "max_output_tokens": 8}} for i in range(5)]
    uploaded = api.files.create(file=("resp.jsonl", jsonl(lines)), purpose="batch")
    assert api.files.retrieve(uploaded.id).filename == "resp.jsonl"
    assert api.files.content(uploaded.id).content == jsonl(lines)
    batch = api.batches.create(input_file_id=uploaded.id, endpoint="/v1/responses", completion_window="24h")
    done = wait_for_status(api, batch.id, ("completed", "failed"))
    out = results(api, done.output_file_id)
    assert sorted(r["custom_id"] for r in out) == [f"r{i}" for i in range(5)]
    assert all(r["response"]["body"]["object"] == "response" for r in out)
    assert api.files.delete(uploaded.id).deleted
    with pytest.raises(openai.NotFoundError):
        api.files.retrieve(uploaded.id)
    assert json.loads(json.dumps(done.to_dict()))["request_counts"]["completed"] == 5


def test_a_malformed_create_body_is_a_400_naming_the_field(system: SluiceSystem) -> None:
    # The SDK cannot send these; a hand-rolled client can.
    headers = {"authorization": f"Bearer {CLIENT_KEY}", "content-type": "application/json"}
    url = f"{system.base_url}/v1/batches"
    wrong_type = httpx.post(url, headers=headers, content=b'{"input_file_id": 7, "endpoint": "/v1/chat/completions",'
                                                          b' "completion_window": "24h"}')
    assert wrong_type.status_code == 400
    assert wrong_type.json()["error"]["param"] == "input_file_id"
    broken = httpx.post(url, headers=headers, content=b'{"input_file_id": ')
    assert broken.status_code == 400
    assert broken.json()["error"]["type"] == "invalid_request_error"
    assert "not valid JSON" in broken.json()["error"]["message"]
