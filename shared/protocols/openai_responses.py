"""OpenAI Responses API, client side only (`POST /v1/responses`): implements `ClientDialect`.

A client's Responses body -> ChatRequest (here); ChatResponse and stream events -> a Response
object and the typed `event:`+`data:` SSE stream (`response.created` ... `response.completed`)
in `openai_responses_render.py`. Upstreams stay Chat/Anthropic/Gemini: no upstream side.

Responses are stored (`store`, default true) and chained (`previous_response_id`) by
api/routes/stored_responses.py around this parser; `conversation`, `background`, `prompt` and
`item_reference` inputs get a 400 naming the field.
A rendered reasoning item's `encrypted_content` is a Sluice envelope ("sluice." + base64url JSON
of provider, signature, redacted data) so the blob returns to the provider that made it; any
other `encrypted_content` is taken as OpenAI's own (provider "openai").
"""

from __future__ import annotations

import base64
import binascii
from typing import Any, Literal

import msgspec

from shared.errors import GatewayError, invalid
from shared.model import (
    ChatRequest,
    Document,
    Image,
    Message,
    Part,
    Reasoning,
    ResponseFormat,
    Text,
    Tool,
    ToolCall,
    ToolChoice,
    ToolResult,
)
from shared.protocols import openai_responses_types as wt
from shared.protocols.common import PDF, append_turn, check_range, document_from_data_uri, image_from_url
from shared.protocols.openai_chat import render_error
from shared.protocols.openai_responses_render import namespaced, render_response, renderer
from shared.protocols.sse import KEEPALIVE

__all__ = ["decode", "keepalive", "name", "parse_request", "render_error", "render_response", "renderer", "sse_ids",
           "to_request"]

name = "openai_responses"
sse_ids = True
keepalive = KEEPALIVE
_request_decoder = msgspec.json.Decoder(wt.RequestBody)


def _validation_error(exc: msgspec.ValidationError, prefix: str = "") -> GatewayError:
    message, sep, path = str(exc).partition(" - at `$")
    param = (prefix + path.rstrip("`")).lstrip(".") if sep else (prefix or None)
    where = f" (at '{param}')" if param else ""
    return invalid(f"Invalid request body: {message}{where}", param)


def _unsupported(param: str, message: str) -> GatewayError:
    return GatewayError("unsupported", message, param=param)


def _convert(value: Any, type_: type[Any], param: str) -> Any:
    try:
        return msgspec.convert(value, type_)
    except msgspec.ValidationError as exc:
        raise _validation_error(exc, param) from None


# --- client side: parse ----------------------------------------------------------------------


def parse_request(body: bytes, model: str | None = None, stream: bool = False) -> ChatRequest:
    """`model` and `stream` come from the body; the arguments are the contract's, unused here.
    A `previous_response_id` is the caller's to resolve (api/routes/stored_responses.py)."""
    return to_request(decode(body))


def decode(body: bytes) -> wt.RequestBody:
    """The body as its wire struct (the stored-Responses route reads `store` and
    `previous_response_id` from it before converting)."""
    try:
        return _request_decoder.decode(body)
    except msgspec.ValidationError as exc:
        raise _validation_error(exc) from None
    except msgspec.DecodeError:
        raise invalid("The request body is not valid JSON.") from None


def to_request(wire: wt.RequestBody) -> ChatRequest:
    _refuse_stateful(wire)
    if wire.input is None:
        raise invalid("'input' is required.", "input")
    check_range(wire.temperature, 0, 2, "temperature")
    check_range(wire.top_p, 0, 1, "top_p")
    if wire.max_output_tokens is not None and wire.max_output_tokens < 1:
        raise invalid("'max_output_tokens' must be at least 1.", "max_output_tokens")
    system = [Text(wire.instructions)] if wire.instructions else []
    if isinstance(wire.input, str):
        messages = [Message(role="user", content=[Text(wire.input)])]
    else:
        messages = _items_in(wire.input, system)
    if not messages:
        raise invalid("'input' must contain at least one user, assistant or tool item.", "input")
    return ChatRequest(
        model=wire.model,
        messages=messages,
        system=system,
        tools=[tool for i, t in enumerate(wire.tools or []) for tool in _tools_in(t, i)],
        tool_choice=_tool_choice_in(wire.tool_choice),
        parallel_tool_calls=wire.parallel_tool_calls,
        response_format=_format_in(wire.text),
        max_tokens=wire.max_output_tokens,
        temperature=wire.temperature,
        top_p=wire.top_p,
        reasoning_effort=wire.reasoning.effort if wire.reasoning else None,
        stream=bool(wire.stream),
        include_usage=True,  # a Response always carries usage
        user=wire.safety_identifier or wire.user,
    )


def _refuse_stateful(wire: wt.RequestBody) -> None:
    if wire.conversation is not None:
        raise _unsupported("conversation", "'conversation' objects are not supported; chain responses "
                           "with 'previous_response_id' or send the whole conversation in 'input'.")
    if wire.background:
        raise _unsupported("background", "'background' responses are not supported.")
    if wire.prompt is not None:
        raise _unsupported("prompt", "Stored prompt templates ('prompt') are not supported.")


def _items_in(items: list[dict[str, Any]], system: list[Text]) -> list[Message]:
    messages: list[Message] = []
    names: dict[str, str] = {}  # call_id -> function name, for ToolResult.name (Gemini needs it)
    for i, raw in enumerate(items):
        where = f"input[{i}]"
        kind = raw.get("type", "message")
        if kind == "message":
            msg: wt.MessageItem = _convert(raw, wt.MessageItem, where)
            if msg.role in ("system", "developer"):
                # Hoisted to the system prompt in order, after `instructions` (as openai_chat does).
                system.append(Text(_text_only(msg.content, f"{where}.content")))
            else:
                role: Literal["user", "assistant"] = "user" if msg.role == "user" else "assistant"
                append_turn(messages, role, _content_in(msg.content, where, role))
        elif kind == "function_call":
            call: wt.FunctionCallItem = _convert(raw, wt.FunctionCallItem, where)
            name = namespaced(call.namespace, call.name)
            names[call.call_id] = name
            append_turn(messages, "assistant", [ToolCall(id=call.call_id, name=name,
                                                      arguments=call.arguments or "{}")])
        elif kind == "function_call_output":
            result: wt.FunctionCallOutputItem = _convert(raw, wt.FunctionCallOutputItem, where)
            content = _text_only(result.output, f"{where}.output")
            append_turn(messages, "user", [ToolResult(tool_call_id=result.call_id, content=content,
                                                  name=names.get(result.call_id))])
        elif kind == "reasoning":
            append_turn(messages, "assistant", [_reasoning_in(_convert(raw, wt.ReasoningItem, where), where)])
        elif kind == "item_reference":
            raise _unsupported(f"{where}.type", "'item_reference' inputs need stored responses, "
                               "which Sluice does not keep; send the item itself.")
        else:
            raise _unsupported(f"{where}.type", f"Input items of type '{kind}' are not supported.")
    return messages


def _content_in(content: str | list[wt.ContentPart], where: str, role: str) -> list[Part]:
    if isinstance(content, str):
        return [Text(content)]
    parts: list[Part] = []
    for j, p in enumerate(content):
        if isinstance(p, wt.InputImage) and role == "user":
            parts.append(_image_in(p, f"{where}.content[{j}]"))
        elif isinstance(p, wt.InputFile) and role == "user":
            parts.append(_file_in(p, f"{where}.content[{j}]"))
        else:
            parts.append(Text(_part_text(p, f"{where}.content[{j}]")))
    return parts


def _part_text(p: wt.ContentPart, where: str) -> str:
    if isinstance(p, wt.InputText | wt.OutputText):
        return p.text
    if isinstance(p, wt.Refusal):
        return p.refusal
    kind = {wt.InputImage: "input_image", wt.InputFile: "input_file", wt.InputAudio: "input_audio"}[type(p)]
    raise _unsupported(f"{where}.type", f"Content parts of type '{kind}' are not supported here.")


def _text_only(content: str | list[wt.ContentPart], parts_at: str) -> str:
    if isinstance(content, str):
        return content
    return "".join(_part_text(p, f"{parts_at}[{j}]") for j, p in enumerate(content))


def _image_in(p: wt.InputImage, where: str) -> Image:
    if p.file_id is not None:
        raise _unsupported(f"{where}.file_id", "Images by 'file_id' are not supported; send 'image_url'.")
    if not p.image_url:
        raise invalid("'image_url' is required for input_image.", f"{where}.image_url")
    return image_from_url(p.image_url)


def _file_in(p: wt.InputFile, where: str) -> Document:
    if p.file_id is not None:  # resolved from the tenant's Files store by the API
        return Document(file_id=p.file_id, title=p.filename)
    if p.file_url is not None:
        return Document(url=p.file_url, media_type=PDF, title=p.filename)
    if p.file_data is None:
        raise invalid("'file_data', 'file_url' or 'file_id' is required for input_file.", f"{where}.file_data")
    return document_from_data_uri(p.file_data, p.filename, f"{where}.file_data")


def _reasoning_in(item: wt.ReasoningItem, where: str) -> Reasoning:
    text = ("".join(c.text for c in item.content) if item.content
            else "\n\n".join(s.text for s in item.summary))
    blob = item.encrypted_content
    if not blob:
        return Reasoning(text=text)
    if not blob.startswith(wt.ENVELOPE):
        return Reasoning(text=text, signature=blob, provider="openai")
    try:
        payload = blob[len(wt.ENVELOPE):]
        raw = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
        env = msgspec.json.decode(raw, type=dict[str, str | None])
    except (binascii.Error, ValueError, msgspec.DecodeError):
        raise invalid("'encrypted_content' was altered; send it back exactly as received.",
                      f"{where}.encrypted_content") from None
    return Reasoning(text=text, signature=env.get("s"), redacted=env.get("r"), provider=env.get("p"))


# Tools OpenAI's servers run themselves. No other upstream can run them, so they are left out of
# the request (the model just does not have them) instead of refusing it: Codex CLI offers
# `web_search` on every turn and would otherwise never get an answer.
_HOSTED = frozenset(("web_search", "web_search_preview", "web_search_2025_08_26", "file_search",
                     "code_interpreter", "image_generation", "tool_search"))


def _tools_in(raw: dict[str, Any], i: int) -> list[Tool]:
    if raw.get("type") in _HOSTED:
        return []
    if raw.get("type") != "namespace":
        return [_tool_in(raw, i)]
    group: wt.NamespaceTool = _convert(raw, wt.NamespaceTool, f"tools[{i}]")
    # Every upstream takes flat function tools only: each inner tool becomes one, its name joined
    # to the namespace's; the renderer splits a call's name again (openai_responses_render.py).
    out = [_tool_in(inner, i, f"tools[{i}].tools[{j}]") for j, inner in enumerate(group.tools)]
    return [msgspec.structs.replace(t, name=namespaced(group.name, t.name), namespace=group.name) for t in out]


def _tool_in(raw: dict[str, Any], i: int, where: str | None = None) -> Tool:
    where = where or f"tools[{i}]"
    kind = raw.get("type")
    if kind != "function":
        raise _unsupported(f"{where}.type", f"Tools of type '{kind}' are not supported; "
                           "only 'function' and 'namespace' tools are.")
    t: wt.FunctionTool = _convert(raw, wt.FunctionTool, where)
    return Tool(name=t.name, parameters=t.parameters or {"type": "object", "properties": {}},
                description=t.description, strict=t.strict)


def _tool_choice_in(choice: str | dict[str, Any] | None) -> ToolChoice | None:
    if choice is None:
        return None
    if isinstance(choice, str):
        return ToolChoice(mode=choice)  # type: ignore[arg-type]
    if choice.get("type") != "function":
        raise _unsupported("tool_choice.type", f"tool_choice of type '{choice.get('type')}' is not "
                           "supported; use 'auto', 'none', 'required' or {type: function, name}.")
    name = choice.get("name")
    if not isinstance(name, str) or not name:
        raise invalid("'tool_choice.name' is required for type function.", "tool_choice.name")
    return ToolChoice(mode="tool", name=name)


def _format_in(text: wt.TextConfig | None) -> ResponseFormat | None:
    fmt = text.format if text else None
    if fmt is None or fmt.type == "text":
        return None
    if fmt.type == "json_object":
        return ResponseFormat(type="json_object")
    if fmt.schema is None:
        raise invalid("'text.format.schema' is required for type json_schema.", "text.format.schema")
    return ResponseFormat(type="json_schema", name=fmt.name, schema=fmt.schema, strict=fmt.strict)
