"""Legal conversations of each client protocol, drawn by hypothesis and rendered on the wire.

A conversation is drawn once as a neutral script (turns of user text, assistant text, tool
calls and their results, mixed result-and-text turns, images, prefill) and rendered as the body
each client protocol would send for it: OpenAI Chat, Responses, Anthropic Messages, Gemini.
Each rendering follows that protocol's own rules (tool messages right after their call; tool
results first in an Anthropic user turn; Gemini answers calls by name), so every body drawn is
one a real client could send. The same renderers build the transcript suite's turns.
"""

from __future__ import annotations

import string
from dataclasses import dataclass, field
from typing import Any

import hypothesis.strategies as st

CLIENTS = ("openai_chat", "openai_responses", "anthropic", "gemini")
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
SCHEMA = {"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]}


@dataclass
class Call:
    id: str
    name: str
    args: dict[str, Any]


@dataclass
class Result:
    call: Call
    text: str
    is_error: bool = False


@dataclass
class Turn:
    role: str  # "user" | "assistant" | "system"
    text: str = ""
    image: bool = False
    calls: list[Call] = field(default_factory=list)
    results: list[Result] = field(default_factory=list)
    reasoning: str = ""  # a signed thinking block / encrypted reasoning item before the calls


@dataclass
class Script:
    system: str
    turns: list[Turn]
    tools: tuple[str, ...] = ("read_file", "run_shell")
    effort: str | None = None  # reasoning effort / thinking on


# --- drawing ---------------------------------------------------------------------------------

_words = st.text(alphabet=string.ascii_letters + " .,", min_size=1, max_size=30).filter(lambda t: t.strip() != "")


def _call_id(client: str, n: int, draw: Any) -> str:
    token = draw(st.text(alphabet=string.ascii_letters + string.digits, min_size=6, max_size=24))
    if client == "anthropic":
        return f"toolu_{token}{n}"
    if client == "gemini":
        return ""  # Gemini calls usually carry no id
    style = draw(st.sampled_from(["call_", "fc_", "", "mistral"]))
    if style == "mistral":  # ids an earlier Mistral answer made (9 alphanumerics) come back too
        return (token + "A" * 9)[:8] + str(n % 10)
    return f"{style}{token}{n}"


@st.composite
def scripts(draw: Any, client: str) -> Script:
    """A conversation legal in `client`'s protocol, ending where the model must answer."""
    tools = ("read_file", "run_shell")
    thinking = client == "anthropic" and draw(st.booleans())
    counter = iter(range(1, 1000))

    def assistant() -> Turn:
        calls = [Call(_call_id(client, n, draw), draw(st.sampled_from(tools)), {"path": f"f{n}.py"})
                 for n in (next(counter) for _ in range(draw(st.integers(0, 3))))]
        text = draw(st.one_of(st.just(""), _words)) if calls else draw(_words)
        reasoning = ""
        if client in ("anthropic", "openai_responses"):
            reasoning = draw(_words) if thinking and calls else draw(st.one_of(st.just(""), _words))
        return Turn("assistant", text=text, calls=calls, reasoning=reasoning)

    def answer(after: Turn) -> list[Turn]:
        results = [Result(c, draw(_words), is_error=draw(st.booleans())) for c in after.calls]
        if results and client != "gemini":
            results = draw(st.permutations(results))
        out: list[Turn] = []
        if not results and client in ("openai_chat", "anthropic") and draw(st.integers(0, 3)) == 0:
            out.append(Turn("system", text=draw(_words)))  # a mid-conversation system message
        mixed = not results or draw(st.booleans())
        out.append(Turn("user", results=results, text=draw(_words) if mixed else "",
                        image=mixed and draw(st.booleans())))
        return out

    turns: list[Turn] = []
    if client in ("openai_chat", "openai_responses") and draw(st.booleans()):
        turns.append(assistant())  # a history cut at the front can open with the model
    else:
        turns.append(Turn("user", text=draw(_words), image=draw(st.booleans())))
    for _ in range(draw(st.integers(1, 6))):
        turns += answer(turns[-1]) if turns[-1].role == "assistant" else [assistant()]
    if turns[-1].role == "assistant":
        turns += answer(turns[-1])
    if client in ("anthropic", "openai_chat") and not thinking and draw(st.integers(0, 5)) == 0:
        turns.append(Turn("assistant", text=draw(_words)))  # prefill: the model continues it
    effort = "high" if thinking or (client == "openai_chat" and draw(st.booleans())) else None
    return Script(system=draw(_words), turns=turns, tools=tools, effort=effort)


# --- rendering -------------------------------------------------------------------------------


def render(client: str, script: Script, model: str = "m", stream: bool = False) -> dict[str, Any]:
    return {"openai_chat": _chat, "openai_responses": _responses, "anthropic": _anthropic,
            "gemini": _gemini}[client](script, model, stream)


def _chat(script: Script, model: str, stream: bool) -> dict[str, Any]:
    messages: list[dict[str, Any]] = [{"role": "system", "content": script.system}]
    for t in script.turns:
        if t.role == "system":
            messages.append({"role": "system", "content": t.text})
        elif t.role == "assistant":
            m: dict[str, Any] = {"role": "assistant", "content": t.text or None}
            if t.calls:
                m["tool_calls"] = [{"id": c.id, "type": "function",
                                    "function": {"name": c.name, "arguments": _json(c.args)}} for c in t.calls]
            messages.append(m)
        else:
            messages += [{"role": "tool", "tool_call_id": r.call.id, "content": r.text} for r in t.results]
            if t.text or t.image:
                parts: list[dict[str, Any]] = [{"type": "text", "text": t.text or "see"}]
                if t.image:
                    parts.append({"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}})
                messages.append({"role": "user", "content": parts})
    tools = [{"type": "function", "function": {"name": n, "description": f"{n} tool", "parameters": SCHEMA}}
             for n in script.tools]
    body: dict[str, Any] = {"model": model, "messages": messages, "tools": tools, "stream": stream}
    if script.effort:
        body["reasoning_effort"] = script.effort
    return body


def _responses(script: Script, model: str, stream: bool) -> dict[str, Any]:
    items: list[dict[str, Any]] = []
    for t in script.turns:
        if t.role == "assistant":
            if t.reasoning:
                items.append({"type": "reasoning", "summary": [{"type": "summary_text", "text": t.reasoning}],
                              "encrypted_content": "gAAAAB" + t.reasoning.replace(" ", "")})
            if t.text:
                items.append({"type": "message", "role": "assistant",
                              "content": [{"type": "output_text", "text": t.text}]})
            items += [{"type": "function_call", "call_id": c.id, "name": c.name, "arguments": _json(c.args)}
                      for c in t.calls]
        elif t.role == "user":
            items += [{"type": "function_call_output", "call_id": r.call.id, "output": r.text} for r in t.results]
            if t.text or t.image:
                content: list[dict[str, Any]] = [{"type": "input_text", "text": t.text or "see"}]
                if t.image:
                    content.append({"type": "input_image", "image_url": f"data:image/png;base64,{PNG}"})
                items.append({"type": "message", "role": "user", "content": content})
    tools = [{"type": "function", "name": n, "description": f"{n} tool", "parameters": SCHEMA, "strict": False}
             for n in script.tools]
    return {"model": model, "instructions": script.system, "input": items, "tools": tools, "store": False,
            "include": ["reasoning.encrypted_content"], "parallel_tool_calls": True, "stream": stream}


def _anthropic(script: Script, model: str, stream: bool) -> dict[str, Any]:
    messages: list[dict[str, Any]] = []
    for t in script.turns:
        blocks: list[dict[str, Any]] = []
        if t.role == "system":  # Claude Code 2.1.x sends these inside `messages`
            messages.append({"role": "system", "content": t.text})
            continue
        if t.role == "assistant":
            if t.reasoning:
                signature = "EqQB" + str(len(t.reasoning))
                blocks.append({"type": "thinking", "thinking": t.reasoning, "signature": signature})
            if t.text:
                blocks.append({"type": "text", "text": t.text})
            blocks += [{"type": "tool_use", "id": c.id, "name": c.name, "input": c.args} for c in t.calls]
        else:
            for r in t.results:
                result: dict[str, Any] = {"type": "tool_result", "tool_use_id": r.call.id,
                                          "content": [{"type": "text", "text": r.text}]}
                if r.is_error:
                    result["is_error"] = True
                blocks.append(result)
            if t.text:
                blocks.append({"type": "text", "text": t.text})
            if t.image:
                blocks.append({"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}})
        messages.append({"role": t.role, "content": blocks})
    tools = [{"name": n, "description": f"{n} tool", "input_schema": SCHEMA} for n in script.tools]
    body = {"model": model, "max_tokens": 4096, "stream": stream, "messages": messages, "tools": tools,
            "system": [{"type": "text", "text": script.system, "cache_control": {"type": "ephemeral"}}]}
    if script.effort:
        body["thinking"] = {"type": "enabled", "budget_tokens": 2048}
    return body


def _gemini(script: Script, model: str, stream: bool) -> dict[str, Any]:
    contents: list[dict[str, Any]] = []
    for t in script.turns:
        parts: list[dict[str, Any]] = []
        if t.role == "assistant":
            if t.text:
                parts.append({"text": t.text})
            parts += [{"functionCall": {"name": c.name, "args": c.args}} for c in t.calls]
        else:
            parts += [{"functionResponse": {"name": r.call.name,
                                            "response": {"error" if r.is_error else "output": r.text}}}
                      for r in t.results]
            if t.text:
                parts.append({"text": t.text})
            if t.image:
                parts.append({"inlineData": {"mimeType": "image/png", "data": PNG}})
        contents.append({"role": "model" if t.role == "assistant" else "user", "parts": parts})
    declarations = [{"name": n, "description": f"{n} tool", "parametersJsonSchema": SCHEMA} for n in script.tools]
    return {"contents": contents, "systemInstruction": {"parts": [{"text": script.system}]},
            "tools": [{"functionDeclarations": declarations}]}


def _json(value: Any) -> str:
    import orjson

    return orjson.dumps(value).decode()
