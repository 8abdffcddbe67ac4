"""The Ollama-compatible surface through the `ollama` Python client against the running system:
model list, model details, chat whole and streamed (NDJSON), a tool-call round trip and images,
on every upstream of the strict mock (Mistral/Devstral, Anthropic, Gemini, OpenAI, DeepSeek)."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import httpx
import ollama
import pytest

from tests.conftest import CLIENT_KEY, SluiceSystem, upstream_matrix

UPSTREAMS = ["mistral", "anthropic", "gemini", "openai", "deepseek"]
WEATHER: Any = [{"type": "function", "function": {
    "name": "get_weather", "description": "Weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]
# 1x1 transparent PNG
PNG = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJ"
                       "RU5ErkJggg==")


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[SluiceSystem]:
    running = upstream_matrix(tmp_path_factory.mktemp("ollama"), redis_url, UPSTREAMS)
    yield running
    running.close()


def _client(system: SluiceSystem, key: str = CLIENT_KEY) -> ollama.Client:
    return ollama.Client(host=system.base_url, headers={"Authorization": f"Bearer {key}"}, timeout=30)


def _chat(client: ollama.Client, stream: bool, **kwargs: Any) -> tuple[ollama.Message, list[ollama.ChatResponse]]:
    """The assistant's message (streamed parts joined as a client would) and the parts."""
    if not stream:
        whole = client.chat(stream=False, **kwargs)
        assert whole.done and whole.done_reason == "stop"
        return whole.message, [whole]
    parts = list(client.chat(stream=True, **kwargs))
    assert parts[-1].done and not any(p.done for p in parts[:-1])
    assert parts[-1].prompt_eval_count and parts[-1].eval_count
    calls = [c for p in parts for c in (p.message.tool_calls or [])]
    text = "".join(p.message.content or "" for p in parts)
    return ollama.Message(role="assistant", content=text, tool_calls=calls or None), parts


def test_version_list_and_show(system: SluiceSystem) -> None:
    client = _client(system)
    assert httpx.get(f"{system.base_url}/api/version", timeout=5).json()["version"]
    assert sorted(m.model or "" for m in client.list().models) == [f"via-{u}" for u in sorted(UPSTREAMS)]
    shown = client.show("via-mistral")
    assert shown.capabilities is not None and "tools" in shown.capabilities
    with pytest.raises(ollama.ResponseError) as info:
        client.show("no-such-model")
    assert info.value.status_code == 404 and "no-such-model" in info.value.error


@pytest.mark.parametrize("stream", [False, True], ids=["sync", "stream"])
@pytest.mark.parametrize("upstream", UPSTREAMS)
def test_chat_and_tool_round_trip(system: SluiceSystem, upstream: str, stream: bool) -> None:
    client = _client(system)
    model = f"via-{upstream}"
    message, parts = _chat(client, stream, model=model, messages=[{"role": "user", "content": "Hello there"}])
    assert (message.content or "").startswith("Hello")
    if stream:
        assert len(parts) > 2  # streamed as separate NDJSON lines, not one object
    history: list[Any] = [{"role": "system", "content": "Be brief."},
                          {"role": "user", "content": "What is the weather in Paris?"}]
    first, _ = _chat(client, stream, model=model, messages=history, tools=WEATHER)
    call = (first.tool_calls or [])[0]
    assert call.function.name == "get_weather" and "city" in call.function.arguments
    history += [first, {"role": "tool", "content": '{"temp": 21}', "tool_name": "get_weather"}]
    second, _ = _chat(client, stream, model=model, messages=history, tools=WEATHER)
    assert (second.content or "").startswith("Tool result received:") and "21" in (second.content or "")


def test_tool_result_answered(system: SluiceSystem) -> None:
    client = _client(system)
    history: list[Any] = [{"role": "user", "content": "What is the weather in Paris?"}]
    first = client.chat(model="via-anthropic", messages=history, tools=WEATHER, stream=False)
    history += [first.message, {"role": "tool", "content": '{"temp": 21}', "tool_name": "get_weather"}]
    second = client.chat(model="via-anthropic", messages=history, tools=WEATHER, stream=False)
    assert (second.message.content or "").startswith("Tool result received: {\"temp\": 21}")


def test_image_reaches_the_upstream(system: SluiceSystem) -> None:
    client = _client(system)
    with_image = client.chat(model="via-anthropic", stream=False, messages=[
        {"role": "user", "content": "Describe this", "images": [PNG]}])
    without = client.chat(model="via-anthropic", stream=False, messages=[
        {"role": "user", "content": "Describe this"}])
    assert (with_image.message.content or "").startswith("Describe")
    # the strict mock checks the image block (media type, data) and counts a quarter of its base64
    assert (with_image.prompt_eval_count or 0) > (without.prompt_eval_count or 0)


def test_errors_in_ollama_shape(system: SluiceSystem) -> None:
    with pytest.raises(ollama.ResponseError) as info:
        _client(system, "sk-wrong").chat(model="via-mistral", messages=[{"role": "user", "content": "x"}])
    assert info.value.status_code == 401
    with pytest.raises(ollama.ResponseError) as info:
        list(_client(system).chat(model="nope", messages=[{"role": "user", "content": "x"}], stream=True))
    assert info.value.status_code == 404 and "nope" in info.value.error
    raw = httpx.post(f"{system.base_url}/api/chat", headers={"Authorization": f"Bearer {CLIENT_KEY}"},
                     json={"model": "via-mistral", "messages": [{"role": "tool", "content": "x"}]}, timeout=10)
    assert raw.status_code == 400 and "tool" in raw.json()["error"]
    streamed = httpx.post(f"{system.base_url}/api/chat", headers={"Authorization": f"Bearer {CLIENT_KEY}"},
                          json={"model": "via-mistral", "messages": [{"role": "user", "content": "x"}]}, timeout=10)
    assert streamed.headers["content-type"].startswith("application/x-ndjson")
    assert all(line.startswith("{") for line in streamed.text.splitlines())
