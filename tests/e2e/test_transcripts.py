"""Long agent-style tool loops, from every client protocol to every upstream, through the SDKs.

Each transcript is a conversation of at least 10 turns driven by the official SDK of one client
protocol (openai Chat and Responses, anthropic, google-genai, the ollama client) against a model served by one
upstream of the strict mock. The client behaves like a coding agent: whenever the model calls a
tool it runs it and sends the result back, every other time together with new words of its own
in the same turn (the mixed tool-result-and-text turn Claude Code sends; the Chat form is a user
message right after the tool messages), and otherwise asks the next question. Turns alternate
between streamed and whole answers. Every turn must be accepted by the upstream: the mock counts
each status it answered, and only 200s may appear.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import anthropic
import httpx
import ollama
import openai
import pytest
from google import genai
from google.genai import types

from tests.conftest import CLIENT_KEY, SluiceSystem, upstream_matrix

UPSTREAMS = ["openai", "anthropic", "gemini", "mistral", "deepseek"]
CLIENTS = ["openai_chat", "openai_responses", "anthropic", "gemini", "ollama"]
SCHEMA = {"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]}
TOOLS = ("read_file", "list_dir")


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[SluiceSystem]:
    running = upstream_matrix(tmp_path_factory.mktemp("transcripts"), redis_url, UPSTREAMS)
    yield running
    running.close()


class Loop:
    """What the agent does with each answer: run the tool calls (adding words on every other
    round), or ask the next question. Counts the turns and the kinds of turns it sent."""

    def __init__(self) -> None:
        self.turn = 0
        self.tool_rounds = 0
        self.mixed = 0

    def words(self) -> str:
        return f"step {self.turn}: keep going and check the next file"

    def with_text(self) -> bool:
        self.tool_rounds += 1
        mixed = self.tool_rounds % 2 == 0
        self.mixed += mixed
        return mixed

    def result(self, name: str, args: dict[str, Any]) -> str:
        return json.dumps({"tool": name, "path": args.get("path"), "lines": [f"line {self.turn}"]})


# --- one driver per client SDK: runs `turns` turns, returns the Loop -------------------------


def chat(system: SluiceSystem, model: str, turns: int) -> Loop:
    client = openai.OpenAI(base_url=f"{system.base_url}/v1", api_key=CLIENT_KEY, max_retries=0,
                           _strict_response_validation=True)
    tools: Any = [{"type": "function", "function": {"name": n, "description": f"{n} tool", "parameters": SCHEMA}}
                  for n in TOOLS]
    loop = Loop()
    messages: Any = [{"role": "system", "content": "You are a coding agent."},
                     {"role": "user", "content": "Look around the repository."}]
    for loop.turn in range(turns):
        if loop.turn % 2:
            with client.chat.completions.stream(model=model, messages=messages, tools=tools) as s:
                reply = s.get_final_completion().choices[0].message
        else:
            reply = client.chat.completions.create(model=model, messages=messages, tools=tools).choices[0].message
        messages.append(reply.model_dump(exclude_none=True, exclude={"parsed"}))
        calls = reply.tool_calls or []
        for call in calls:
            assert call.type == "function"
            messages.append({"role": "tool", "tool_call_id": call.id,
                             "content": loop.result(call.function.name, json.loads(call.function.arguments))})
        if not calls or loop.with_text():
            messages.append({"role": "user", "content": loop.words()})
    return loop


def responses(system: SluiceSystem, model: str, turns: int) -> Loop:
    client = openai.OpenAI(base_url=f"{system.base_url}/v1", api_key=CLIENT_KEY, max_retries=0,
                           _strict_response_validation=True)
    tools: Any = [{"type": "function", "name": n, "description": f"{n} tool", "parameters": SCHEMA, "strict": False}
                  for n in TOOLS]
    loop = Loop()
    items: Any = [{"role": "user", "content": "Look around the repository."}]
    options: Any = {"model": model, "tools": tools, "instructions": "You are a coding agent.", "store": False,
                    "include": ["reasoning.encrypted_content"]}
    for loop.turn in range(turns):
        if loop.turn % 2:
            with client.responses.stream(input=items, **options) as s:
                reply = s.get_final_response()
        else:
            reply = client.responses.create(input=items, **options)
        calls = [item for item in reply.output if item.type == "function_call"]
        items += [item.model_dump(exclude_none=True) for item in reply.output]
        items += [{"type": "function_call_output", "call_id": c.call_id,
                   "output": loop.result(c.name, json.loads(c.arguments))} for c in calls]
        if not calls or loop.with_text():
            items.append({"role": "user", "content": [{"type": "input_text", "text": loop.words()}]})
    return loop


def messages_api(system: SluiceSystem, model: str, turns: int) -> Loop:
    client = anthropic.Anthropic(base_url=system.base_url, api_key=CLIENT_KEY, max_retries=0,
                                 _strict_response_validation=True)
    tools: Any = [{"name": n, "description": f"{n} tool", "input_schema": SCHEMA} for n in TOOLS]
    system_prompt: Any = [{"type": "text", "text": "You are a coding agent.", "cache_control": {"type": "ephemeral"}}]
    loop = Loop()
    messages: Any = [{"role": "user", "content": "Look around the repository."}]
    for loop.turn in range(turns):
        options: Any = {"model": model, "max_tokens": 512, "messages": messages, "tools": tools,
                        "system": system_prompt}
        if loop.turn % 2:
            with client.messages.stream(**options) as s:
                reply = s.get_final_message()
        else:
            reply = client.messages.create(**options)
        messages.append({"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in reply.content]})
        uses = [b for b in reply.content if b.type == "tool_use"]
        content: list[dict[str, Any]] = [
            {"type": "tool_result", "tool_use_id": u.id, "content": loop.result(u.name, dict(u.input)),  # type: ignore[arg-type]
             "is_error": loop.turn % 3 == 0} for u in uses]
        if not uses or loop.with_text():
            content.append({"type": "text", "text": loop.words()})
        messages.append({"role": "user", "content": content})
    return loop


def gemini(system: SluiceSystem, model: str, turns: int) -> Loop:
    client = genai.Client(api_key=CLIENT_KEY, http_options=types.HttpOptions(base_url=system.base_url))
    config = types.GenerateContentConfig(
        system_instruction="You are a coding agent.",
        tools=[types.Tool(function_declarations=[
            types.FunctionDeclaration(name=n, description=f"{n} tool", parameters_json_schema=SCHEMA) for n in TOOLS])],
        automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True),
    )
    loop = Loop()
    contents: list[types.Content] = [types.Content(role="user", parts=[types.Part(text="Look around the repository.")])]
    for loop.turn in range(turns):
        if loop.turn % 2:
            chunks = list(client.models.generate_content_stream(model=model, contents=contents, config=config))
            parts = [p for c in chunks for p in _parts(c)]
        else:
            parts = _parts(client.models.generate_content(model=model, contents=contents, config=config))
        assert parts, "an empty answer"
        contents.append(types.Content(role="model", parts=parts))
        calls = [p.function_call for p in parts if p.function_call is not None]
        answer = [types.Part(function_response=types.FunctionResponse(
            id=c.id, name=c.name, response={"output": loop.result(c.name or "", dict(c.args or {}))})) for c in calls]
        if not calls or loop.with_text():
            answer.append(types.Part(text=loop.words()))
        contents.append(types.Content(role="user", parts=answer))
    return loop


def ollama_chat(system: SluiceSystem, model: str, turns: int) -> Loop:
    client = ollama.Client(host=system.base_url, headers={"Authorization": f"Bearer {CLIENT_KEY}"}, timeout=60)
    tools: Any = [{"type": "function", "function": {"name": n, "description": f"{n} tool", "parameters": SCHEMA}}
                  for n in TOOLS]
    loop = Loop()
    messages: list[dict[str, Any]] = [{"role": "system", "content": "You are a coding agent."},
                                      {"role": "user", "content": "Look around the repository."}]
    for loop.turn in range(turns):
        if loop.turn % 2:
            chunks = list(client.chat(model=model, messages=messages, tools=tools, stream=True))
            content = "".join(c.message.content or "" for c in chunks)
            calls = [call for c in chunks for call in (c.message.tool_calls or [])]
        else:
            reply = client.chat(model=model, messages=messages, tools=tools).message
            content, calls = reply.content or "", list(reply.tool_calls or [])
        # Ollama's calls carry no ids: each tool message names its tool, answered in call order
        messages.append({"role": "assistant", "content": content, "tool_calls": [
            {"function": {"name": c.function.name, "arguments": dict(c.function.arguments)}} for c in calls]})
        messages += [{"role": "tool", "tool_name": c.function.name,
                      "content": loop.result(c.function.name, dict(c.function.arguments))} for c in calls]
        if not calls or loop.with_text():
            messages.append({"role": "user", "content": loop.words()})
    return loop


def _parts(reply: types.GenerateContentResponse) -> list[types.Part]:
    content = (reply.candidates or [types.Candidate()])[0].content
    return list(content.parts or []) if content is not None else []


DRIVERS: dict[str, Callable[[SluiceSystem, str, int], Loop]] = {
    "openai_chat": chat, "openai_responses": responses, "anthropic": messages_api, "gemini": gemini,
    "ollama": ollama_chat}


def _transcript(system: SluiceSystem, client: str, upstream: str, turns: int) -> None:
    httpx.post(f"{system.mock_url}/_reset", timeout=5).raise_for_status()
    loop = DRIVERS[client](system, f"via-{upstream}", turns)
    stats = system.mock_stats()
    assert stats["by_status"] == {"200": turns}, stats  # every turn reached the upstream and was accepted
    assert loop.tool_rounds >= 3 and loop.mixed >= 1, vars(loop)  # a real tool loop, mixed turns included


@pytest.mark.parametrize("upstream", UPSTREAMS)
@pytest.mark.parametrize("client", CLIENTS)
def test_ten_turn_tool_loop(system: SluiceSystem, client: str, upstream: str) -> None:
    _transcript(system, client, upstream, turns=12)


@pytest.mark.slow
@pytest.mark.parametrize("upstream", UPSTREAMS)
@pytest.mark.parametrize("client", CLIENTS)
def test_long_tool_loop(system: SluiceSystem, client: str, upstream: str) -> None:
    _transcript(system, client, upstream, turns=30)
