"""Every client protocol against every upstream provider, through the official SDKs.

One running system serves a model per upstream dialect; the mock provider speaks each
upstream's wire format strictly (Anthropic wants x-api-key, anthropic-version, max_tokens and
paired tool turns; Gemini wants user/model roles and answered calls; Mistral refuses unknown
fields and tool-call ids that are not 9 alphanumerics), so a conversion bug fails here.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import anthropic
import openai
import pytest
from google import genai
from google.genai import types

from tests.conftest import CLIENT_KEY, SluiceSystem, upstream_matrix

UPSTREAMS = ["openai", "anthropic", "gemini", "mistral", "deepseek"]
CLIENTS = ["openai_chat", "openai_responses", "anthropic", "gemini"]
PROMPT = "What is the weather in Paris?"
WEATHER_SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[SluiceSystem]:
    running = upstream_matrix(tmp_path_factory.mktemp("matrix"), redis_url, UPSTREAMS)
    yield running
    running.close()


# --- one adapter per client SDK: (text answer, tool round trip) ----------------------------


def _openai(system: SluiceSystem) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{system.base_url}/v1", api_key=CLIENT_KEY, max_retries=0,
                         _strict_response_validation=True)


def chat_text(system: SluiceSystem, model: str, stream: bool) -> str:
    client = _openai(system)
    messages: Any = [{"role": "user", "content": PROMPT}]
    if not stream:
        return client.chat.completions.create(model=model, messages=messages).choices[0].message.content or ""
    chunks = client.chat.completions.create(model=model, messages=messages, stream=True)
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


def chat_tools(system: SluiceSystem, model: str, stream: bool) -> tuple[str, dict[str, Any], str]:
    client = _openai(system)
    tools: Any = [{"type": "function", "function": {"name": "get_weather", "parameters": WEATHER_SCHEMA}}]
    messages: Any = [{"role": "user", "content": PROMPT}]
    if stream:
        with client.chat.completions.stream(model=model, messages=messages, tools=tools) as s:
            first = s.get_final_completion()
    else:
        first = client.chat.completions.create(model=model, messages=messages, tools=tools)
    assert first.choices[0].finish_reason == "tool_calls"
    call = (first.choices[0].message.tool_calls or [])[0]
    assert call.type == "function"
    messages += [first.choices[0].message.model_dump(exclude_none=True),
                 {"role": "tool", "tool_call_id": call.id, "content": '{"temp": 21}'}]
    second = client.chat.completions.create(model=model, messages=messages, tools=tools)
    return call.function.name, json.loads(call.function.arguments), second.choices[0].message.content or ""


def responses_text(system: SluiceSystem, model: str, stream: bool) -> str:
    client = _openai(system)
    if not stream:
        return client.responses.create(model=model, input=PROMPT).output_text
    with client.responses.stream(model=model, input=PROMPT) as s:
        return s.get_final_response().output_text


def responses_tools(system: SluiceSystem, model: str, stream: bool) -> tuple[str, dict[str, Any], str]:
    client = _openai(system)
    tools: Any = [{"type": "function", "name": "get_weather", "parameters": WEATHER_SCHEMA, "strict": False}]
    if stream:
        with client.responses.stream(model=model, input=PROMPT, tools=tools) as s:
            first = s.get_final_response()
    else:
        first = client.responses.create(model=model, input=PROMPT, tools=tools)
    calls = [item for item in first.output if item.type == "function_call"]
    call = calls[0]
    history: Any = [{"role": "user", "content": PROMPT}, call.model_dump(exclude_none=True),
                    {"type": "function_call_output", "call_id": call.call_id, "output": '{"temp": 21}'}]
    second = client.responses.create(model=model, input=history, tools=tools)
    return call.name, json.loads(call.arguments), second.output_text


def _anthropic(system: SluiceSystem) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=system.base_url, api_key=CLIENT_KEY, max_retries=0,
                               _strict_response_validation=True)


def anthropic_text(system: SluiceSystem, model: str, stream: bool) -> str:
    client = _anthropic(system)
    messages: Any = [{"role": "user", "content": PROMPT}]
    if stream:
        with client.messages.stream(model=model, max_tokens=256, messages=messages) as s:
            message = s.get_final_message()
    else:
        message = client.messages.create(model=model, max_tokens=256, messages=messages)
    return "".join(b.text for b in message.content if b.type == "text")


def anthropic_tools(system: SluiceSystem, model: str, stream: bool) -> tuple[str, dict[str, Any], str]:
    client = _anthropic(system)
    tools: Any = [{"name": "get_weather", "input_schema": WEATHER_SCHEMA}]
    messages: Any = [{"role": "user", "content": PROMPT}]
    if stream:
        with client.messages.stream(model=model, max_tokens=256, messages=messages, tools=tools) as s:
            first = s.get_final_message()
    else:
        first = client.messages.create(model=model, max_tokens=256, messages=messages, tools=tools)
    assert first.stop_reason == "tool_use"
    use = next(b for b in first.content if b.type == "tool_use")
    messages += [{"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]},
                 {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id,
                                               "content": '{"temp": 21}'}]}]
    second = client.messages.create(model=model, max_tokens=256, messages=messages, tools=tools)
    text = "".join(b.text for b in second.content if b.type == "text")
    return use.name, dict(use.input), text  # type: ignore[arg-type]


def _gemini(system: SluiceSystem) -> genai.Client:
    return genai.Client(api_key=CLIENT_KEY, http_options=types.HttpOptions(base_url=system.base_url))


def gemini_text(system: SluiceSystem, model: str, stream: bool) -> str:
    client = _gemini(system)
    if not stream:
        return client.models.generate_content(model=model, contents=PROMPT).text or ""
    return "".join(c.text or "" for c in client.models.generate_content_stream(model=model, contents=PROMPT))


def gemini_tools(system: SluiceSystem, model: str, stream: bool) -> tuple[str, dict[str, Any], str]:
    client = _gemini(system)
    config = types.GenerateContentConfig(
        tools=[types.Tool(function_declarations=[types.FunctionDeclaration(
            name="get_weather", parameters_json_schema=WEATHER_SCHEMA)])],
        automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True),
    )
    user = types.Content(role="user", parts=[types.Part(text=PROMPT)])
    if stream:
        chunks = list(client.models.generate_content_stream(model=model, contents=[user], config=config))
        calls = [c for chunk in chunks for c in (chunk.function_calls or [])]
        model_turn = types.Content(role="model", parts=[types.Part(function_call=c) for c in calls])
    else:
        first = client.models.generate_content(model=model, contents=[user], config=config)
        calls = first.function_calls or []
        model_turn = first.candidates[0].content  # type: ignore[index, assignment]
    call = calls[0]
    answer = types.Content(role="user", parts=[types.Part(function_response=types.FunctionResponse(
        id=call.id, name=call.name, response={"temp": 21}))])
    second = client.models.generate_content(model=model, contents=[user, model_turn, answer], config=config)
    return call.name or "", dict(call.args or {}), second.text or ""


TEXT = {"openai_chat": chat_text, "openai_responses": responses_text, "anthropic": anthropic_text,
        "gemini": gemini_text}
TOOLS = {"openai_chat": chat_tools, "openai_responses": responses_tools, "anthropic": anthropic_tools,
         "gemini": gemini_tools}


@pytest.mark.parametrize("stream", [False, True], ids=["sync", "stream"])
@pytest.mark.parametrize("upstream", UPSTREAMS)
@pytest.mark.parametrize("client", CLIENTS)
def test_text(system: SluiceSystem, client: str, upstream: str, stream: bool) -> None:
    text = TEXT[client](system, f"via-{upstream}", stream)
    assert len(text.split()) >= 3, text


@pytest.mark.parametrize("stream", [False, True], ids=["sync", "stream"])
@pytest.mark.parametrize("upstream", UPSTREAMS)
@pytest.mark.parametrize("client", CLIENTS)
def test_tool_round_trip(system: SluiceSystem, client: str, upstream: str, stream: bool) -> None:
    name, args, answer = TOOLS[client](system, f"via-{upstream}", stream)
    assert name == "get_weather"
    assert args == {"city": "mock"}
    assert answer.startswith("Tool result received"), answer
