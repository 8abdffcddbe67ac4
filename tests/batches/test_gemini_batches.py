"""Gemini batch mode with inline requests end to end, driven by google-genai's `client.batches`."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from google import genai
from google.genai import errors, types

from tests.conftest import CLIENT_KEY, OTHER_CLIENT_KEY, SluiceSystem, two_account_model, wait_until


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[SluiceSystem]:
    accounts, models = two_account_model(rpm=600)
    running = SluiceSystem(tmp_path_factory.mktemp("gemini-batches"), redis_url, accounts=accounts,
                           models=models, batchers=1)
    yield running
    running.close()


def client(system: SluiceSystem, key: str = CLIENT_KEY) -> genai.Client:
    return genai.Client(api_key=key, http_options=types.HttpOptions(base_url=system.base_url))


def inline(n: int) -> list[Any]:
    return [{"contents": [{"role": "user", "parts": [{"text": f"hello {i}"}]}],
             "config": {"max_output_tokens": 8}, "metadata": {"n": str(i)}} for i in range(n)]


def finished(api: genai.Client, name: str) -> Any:
    seen: dict[str, Any] = {}

    def check() -> bool:
        seen["job"] = api.batches.get(name=name)
        return seen["job"].done

    wait_until(check, 60, "the batch job to finish")
    return seen["job"]


def test_inline_batch_end_to_end(system: SluiceSystem) -> None:
    api = client(system)
    job = api.batches.create(model="test-model", src=inline(6), config={"display_name": "e2e"})
    assert job.name and job.name.startswith("batches/") and job.display_name == "e2e"
    assert job.state in (types.JobState.JOB_STATE_PENDING, types.JobState.JOB_STATE_RUNNING)
    done = finished(api, job.name)
    assert done.state == types.JobState.JOB_STATE_SUCCEEDED
    responses = done.dest.inlined_responses
    assert len(responses) == 6
    for r in responses:  # in request order, each with text
        assert r.error is None and r.response is not None and r.response.text
    assert [r.metadata for r in responses] == [{"key": str(i)} for i in range(6)]
    assert job.name in [j.name for j in api.batches.list()]
    api.batches.delete(name=job.name)
    with pytest.raises(errors.ClientError):
        api.batches.get(name=job.name)


def test_cancel_and_privacy(system: SluiceSystem) -> None:
    api = client(system)
    job = api.batches.create(model="test-model", src=inline(200))
    assert job.name is not None
    stranger = client(system, OTHER_CLIENT_KEY)  # kept in a name: a collected Client closes its connection
    with pytest.raises(errors.ClientError) as info:
        stranger.batches.get(name=job.name)
    assert info.value.code == 404
    api.batches.cancel(name=job.name)
    done = finished(api, job.name)
    assert done.state == types.JobState.JOB_STATE_CANCELLED
    responses = done.dest.inlined_responses
    assert len(responses) == 200
    cancelled = [r for r in responses if r.error is not None and r.error.code == 499]
    assert cancelled and all("cancelled" in (r.error.message or "") for r in cancelled)  # type: ignore[union-attr]


def test_unknown_model_is_refused(system: SluiceSystem) -> None:
    api = client(system)
    with pytest.raises(errors.ClientError) as info:
        api.batches.create(model="no-such-model", src=inline(1))
    assert info.value.code == 404
