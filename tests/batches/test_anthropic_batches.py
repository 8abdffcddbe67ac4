"""Anthropic Message Batches end to end with the official anthropic SDK: create, retrieve, list,
results (JSONL from the results_url Sluice hands out), cancel, delete; validation as a 400."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import pytest

from tests.conftest import CLIENT_KEY, OTHER_CLIENT_KEY, SluiceSystem, two_account_model, wait_until


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[SluiceSystem]:
    accounts, models = two_account_model(rpm=600)
    running = SluiceSystem(tmp_path_factory.mktemp("anthropic-batches"), redis_url, accounts=accounts,
                           models=models, batchers=1)
    yield running
    running.close()


def client(system: SluiceSystem, key: str = CLIENT_KEY) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=system.base_url, api_key=key, max_retries=0)


def request(custom_id: str, text: str = "hi", **params: Any) -> Any:
    return {"custom_id": custom_id, "params": {"model": "test-model", "max_tokens": 8,
                                               "messages": [{"role": "user", "content": text}], **params}}


def ended(api: anthropic.Anthropic, batch_id: str) -> Any:
    seen: dict[str, Any] = {}

    def check() -> bool:
        seen["b"] = api.messages.batches.retrieve(batch_id)
        return seen["b"].processing_status == "ended"

    wait_until(check, 60, "the message batch to end")
    return seen["b"]


def test_message_batch_end_to_end(system: SluiceSystem) -> None:
    api = client(system)
    batch = api.messages.batches.create(requests=[request(f"m{i}", f"hello {i}") for i in range(12)])
    assert batch.id.startswith("msgbatch_") and batch.processing_status == "in_progress"
    assert batch.request_counts.processing == 12 and batch.results_url is None
    done = ended(api, batch.id)
    assert done.request_counts.succeeded == 12 and done.request_counts.processing == 0
    assert done.ended_at is not None and done.results_url is not None
    assert done.results_url.startswith(system.base_url)
    got = {r.custom_id: r.result for r in api.messages.batches.results(batch.id)}
    assert sorted(got) == sorted(f"m{i}" for i in range(12))
    for result in got.values():
        assert result.type == "succeeded"
        assert result.message.content[0].type == "text" and result.message.content[0].text  # type: ignore[union-attr]
    assert batch.id in [b.id for b in api.messages.batches.list(limit=50)]
    assert api.messages.batches.delete(batch.id).type == "message_batch_deleted"
    with pytest.raises(anthropic.NotFoundError):
        api.messages.batches.retrieve(batch.id)


def test_cancel_ends_with_canceled_results(system: SluiceSystem) -> None:
    api = client(system)
    batch = api.messages.batches.create(requests=[request(f"k{i}") for i in range(200)])  # ~10 s at 2x600 rpm
    with pytest.raises(anthropic.BadRequestError):
        api.messages.batches.delete(batch.id)  # not ended yet
    canceling = api.messages.batches.cancel(batch.id)
    assert canceling.processing_status in ("canceling", "ended") and canceling.cancel_initiated_at
    done = ended(api, batch.id)
    counts = done.request_counts
    assert counts.canceled > 0 and counts.succeeded + counts.canceled + counts.errored == 200
    types = [r.result.type for r in api.messages.batches.results(batch.id)]
    assert len(types) == 200 and types.count("canceled") == counts.canceled


def test_an_invalid_request_is_a_400_naming_it(system: SluiceSystem) -> None:
    api = client(system)
    with pytest.raises(anthropic.BadRequestError) as info:
        api.messages.batches.create(requests=[request("a"), request("b", max_tokens=0)])
    assert "requests[1]" in info.value.message
    with pytest.raises(anthropic.BadRequestError) as info:
        api.messages.batches.create(requests=[request("a"), request("a")])
    assert "requests[1]" in info.value.message and "custom_id" in info.value.message
    with pytest.raises(anthropic.BadRequestError):
        api.messages.batches.create(requests=[request("a", model="no-such-model")])


def test_a_batch_is_invisible_to_other_keys(system: SluiceSystem) -> None:
    batch = client(system).messages.batches.create(requests=[request("x")])
    stranger = client(system, OTHER_CLIENT_KEY)
    with pytest.raises(anthropic.NotFoundError):
        stranger.messages.batches.retrieve(batch.id)
    with pytest.raises(anthropic.NotFoundError):
        stranger.messages.batches.cancel(batch.id)
    assert batch.id not in [b.id for b in stranger.messages.batches.list()]
    ended(client(system), batch.id)


def test_a_malformed_create_body_is_a_400_in_anthropic_shape(system: SluiceSystem) -> None:
    headers = {"x-api-key": CLIENT_KEY, "anthropic-version": "2023-06-01", "content-type": "application/json"}
    url = f"{system.base_url}/v1/messages/batches"
    wrong_type = httpx.post(url, headers=headers, content=b'{"requests": {"custom_id": "a"}}')
    assert wrong_type.status_code == 400
    body = wrong_type.json()
    assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
    assert "requests" in body["error"]["message"]
    broken = httpx.post(url, headers=headers, content=b'{"requests": [')
    assert broken.status_code == 400
    assert "not valid JSON" in broken.json()["error"]["message"]
