"""`x-sluice-account` pins a request to one account of its model (for debugging one key)."""

from __future__ import annotations

from collections.abc import Iterator

import anthropic
import openai
import pytest

from tests.conftest import CLIENT_KEY, SluiceSystem, two_account_model

MESSAGES: list[dict[str, str]] = [{"role": "user", "content": "hello"}]


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[SluiceSystem]:
    accounts, models = two_account_model()
    running = SluiceSystem(tmp_path_factory.mktemp("pin"), redis_url, accounts=accounts, models=models)
    yield running
    running.close()


def _chat(system: SluiceSystem) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{system.base_url}/v1", api_key=CLIENT_KEY, max_retries=0)


@pytest.mark.parametrize("stream", [False, True])
def test_pinned_requests_all_go_to_that_account(system: SluiceSystem, stream: bool) -> None:
    before = system.counter("acct-a", "completed"), system.counter("acct-b", "completed")
    for _ in range(8):
        reply = _chat(system).chat.completions.create(model="test-model", messages=MESSAGES, max_tokens=4,  # type: ignore[arg-type]
                                                      stream=stream, extra_headers={"x-sluice-account": "acct-b"})
        if stream:
            assert any(c.choices and c.choices[0].finish_reason for c in reply)  # type: ignore[union-attr]
    assert system.counter("acct-a", "completed") == before[0]  # unpinned, routing would share them out
    assert system.counter("acct-b", "completed") == before[1] + 8


def test_an_account_outside_the_model_is_a_400_naming_the_header(system: SluiceSystem) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        _chat(system).chat.completions.create(model="test-model", messages=MESSAGES,  # type: ignore[arg-type]
                                              extra_headers={"x-sluice-account": "acct-z"})
    assert "acct-z" in info.value.message and "x-sluice-account" in info.value.message
    client = anthropic.Anthropic(base_url=system.base_url, api_key=CLIENT_KEY, max_retries=0)
    with pytest.raises(anthropic.BadRequestError) as caught:
        client.messages.create(model="test-model", max_tokens=8, messages=MESSAGES,  # type: ignore[arg-type]
                               extra_headers={"x-sluice-account": "acct-z"})
    assert caught.value.body["error"]["type"] == "invalid_request_error"  # type: ignore[index]
