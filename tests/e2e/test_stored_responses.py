"""Stored Responses through the official openai SDK against the running system: `store`,
`previous_response_id` chains rebuilt for strict upstreams (Mistral/Devstral, Anthropic, Gemini),
retrieve, delete, input_items with the SDK's pagination, and isolation between client keys."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import CLIENT_KEY, OTHER_CLIENT_KEY, SluiceSystem, wait_until

UPSTREAMS = ["mistral", "anthropic", "gemini"]
WEATHER_SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
TOOLS: Any = [{"type": "function", "name": "get_weather", "parameters": WEATHER_SCHEMA, "strict": False}]


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[SluiceSystem]:
    placeholder = "http://MOCK"
    accounts = [
        {"name": "up-anthropic", "provider": "anthropic", "api_key": "mock-key", "base_url": placeholder},
        {"name": "up-gemini", "provider": "gemini", "api_key": "mock-key", "base_url": placeholder},
        {"name": "up-mistral", "provider": "mistral", "api_key": "mock-key",
         "base_url": f"{placeholder}/mistral/v1"},
    ]
    models = [{"name": f"via-{u}", "route": [{"account": f"up-{u}", "model": "mock-model"}]} for u in UPSTREAMS]
    running = SluiceSystem(tmp_path_factory.mktemp("stored"), redis_url, accounts=accounts, models=models,
                           base_url_placeholder=placeholder)
    yield running
    running.close()


def _client(system: SluiceSystem, key: str = CLIENT_KEY) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{system.base_url}/v1", api_key=key, max_retries=0)


def _create(client: openai.OpenAI, stream: bool, **kwargs: Any) -> Any:
    if not stream:
        return client.responses.create(**kwargs)
    with client.responses.stream(**kwargs) as s:
        return s.get_final_response()


@pytest.mark.parametrize("stream", [False, True], ids=["sync", "stream"])
@pytest.mark.parametrize("upstream", UPSTREAMS)
def test_tool_loop_chained_by_previous_response_id(system: SluiceSystem, upstream: str, stream: bool) -> None:
    """The second turn sends only the tool's output: a strict upstream accepts it only when Sluice
    rebuilt the stored history (user turn, then the assistant's call) in front of it."""
    client = _client(system)
    model = f"via-{upstream}"
    first = _create(client, stream, model=model, input="What is the weather in Paris?", tools=TOOLS, store=True)
    call = next(item for item in first.output if item.type == "function_call")
    assert "city" in json.loads(call.arguments)
    output = [{"type": "function_call_output", "call_id": call.call_id, "output": '{"temp": 21}'}]
    second = _create(client, stream, model=model, input=output, tools=TOOLS, previous_response_id=first.id)
    assert second.output_text.startswith("Tool result received:"), second.output_text
    assert first.store is True and second.previous_response_id == first.id
    third = _create(client, stream, model=model, input="Thanks. And in Rome?", previous_response_id=second.id)
    alone = client.responses.create(model=model, input="Thanks. And in Rome?", store=False)
    assert third.usage is not None and alone.usage is not None
    assert third.usage.input_tokens > alone.usage.input_tokens  # the whole chain reached the upstream
    stored = client.responses.retrieve(third.id)
    assert stored.id == third.id and stored.output_text == third.output_text
    assert stored.previous_response_id == second.id and stored.store is True


def test_retrieve_delete_and_other_keys(system: SluiceSystem) -> None:
    client = _client(system)
    made = client.responses.create(model="via-mistral", input="Hello there")
    assert client.responses.retrieve(made.id).output_text == made.output_text
    other = _client(system, OTHER_CLIENT_KEY)
    for call in (lambda: other.responses.retrieve(made.id), lambda: other.responses.delete(made.id),
                 lambda: other.responses.input_items.list(made.id),
                 lambda: other.responses.create(model="via-mistral", input="x", previous_response_id=made.id)):
        with pytest.raises(openai.NotFoundError):
            call()
    with pytest.raises(openai.BadRequestError) as streamed:
        client.responses.retrieve(made.id, stream=True)
    assert streamed.value.param == "stream"
    client.responses.delete(made.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(made.id)
    with pytest.raises(openai.NotFoundError) as info:
        client.responses.create(model="via-mistral", input="x", previous_response_id=made.id)
    assert info.value.param == "previous_response_id"


def test_store_false_keeps_nothing(system: SluiceSystem) -> None:
    client = _client(system)
    made = client.responses.create(model="via-anthropic", input="Hello there", store=False)
    assert made.store is False
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(made.id)


def test_input_items_pages(system: SluiceSystem) -> None:
    client = _client(system)
    sent: Any = [{"role": "developer", "content": "Be brief."}] + [
        {"role": "user" if i % 2 == 0 else "assistant", "content": f"turn {i}"} for i in range(6)]
    made = client.responses.create(model="via-anthropic", input=sent)
    page = client.responses.input_items.list(made.id, limit=3, order="asc")
    assert [item.type for item in page.data] == ["message"] * 3 and page.has_more
    texts = [item.content[0].text for item in page.data]  # type: ignore[union-attr]
    assert texts == ["Be brief.", "turn 0", "turn 1"]
    everything = list(client.responses.input_items.list(made.id, limit=2, order="asc"))  # auto-paginates
    assert [item.content[0].text for item in everything][1:] == [f"turn {i}" for i in range(6)]  # type: ignore[union-attr]
    newest = client.responses.input_items.list(made.id, limit=1)
    assert newest.data[0].content[0].text == "turn 5"  # type: ignore[union-attr]
    with pytest.raises(openai.BadRequestError) as info:
        client.responses.input_items.list(made.id, limit=1000)
    assert info.value.param == "limit"


def test_stream_left_midway_is_still_stored(system: SluiceSystem) -> None:
    """The job runs on after its client leaves (it may resume): its answer is stored when it ends."""
    client = _client(system)
    system.mock_config(tokens_per_second=16)  # a one-second stream: the client leaves long before its end
    try:
        with httpx.stream("POST", f"{system.base_url}/v1/responses", timeout=10,
                          headers={"Authorization": f"Bearer {CLIENT_KEY}"},
                          json={"model": "via-anthropic", "input": "Hello there", "stream": True}) as r:
            response_id = f"resp_{r.headers['x-sluice-request-id']}"
            first = next(r.iter_bytes())
            assert b"response.created" in first and b"response.completed" not in first

        def stored() -> bool:
            try:
                client.responses.retrieve(response_id)
            except openai.NotFoundError:
                return False
            return True

        wait_until(stored, timeout=20, what="the abandoned stream's response to be stored")
        assert client.responses.retrieve(response_id).output_text.startswith("Hello")
    finally:
        system.mock_config(tokens_per_second=0)
