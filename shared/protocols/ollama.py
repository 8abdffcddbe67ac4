"""Ollama's chat API, client side (`POST /api/chat`): implements `ClientDialect`.

For tools that speak only Ollama (VS Code Copilot's Ollama provider, Open WebUI, Continue). A
client's body -> ChatRequest; ChatResponse and stream events -> Ollama's JSON and its NDJSON
stream (one object per line, the last one `"done": true` with the token counts). The API
writes every stream as SSE frames; the Ollama route re-frames them as lines (api/routes/ollama.py),
so this module renders plain JSON objects with no event names.

Ollama tool calls carry no ids: calls get `call_<turn>_<n>`, and a `tool` message answers the
first unanswered call with its `tool_name` (or the first unanswered call when it names none).
Images are bare base64; their media type is read from the data's first bytes.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any, Literal

import msgspec
import orjson

from shared.errors import GatewayError, invalid
from shared.model import (
    BlockStart,
    BlockStop,
    ChatRequest,
    ChatResponse,
    Complete,
    FinishReason,
    Image,
    Message,
    MessageStop,
    Part,
    Reasoning,
    ReasoningDelta,
    ResponseFormat,
    StreamError,
    StreamEvent,
    Text,
    TextDelta,
    Tool,
    ToolArgsDelta,
    ToolCall,
    ToolResult,
    Usage,
    UsageEvent,
)
from shared.protocols.common import append_turn, arguments_object, check_range, decode_body, dumps, replay
from shared.protocols.contracts import Rendered

name = "ollama"
sse_ids = False
keepalive = b""  # an NDJSON reader parses every line: an idle stream sends nothing

API_VERSION = "0.12.0"  # the Ollama API level this surface follows (clients gate features on it)
CONTEXT_LENGTH = 131072  # reported by /api/show; Sluice's models do not state one


# --- wire structs ----------------------------------------------------------------------------


class FunctionCall(msgspec.Struct):
    name: str
    arguments: dict[str, Any] | str = msgspec.field(default_factory=dict)


class WireToolCall(msgspec.Struct):
    function: FunctionCall
    id: str | None = None


class WireMessage(msgspec.Struct):
    role: Literal["system", "user", "assistant", "tool"]
    content: str = ""
    images: list[str] | None = None
    tool_calls: list[WireToolCall] | None = None
    tool_name: str | None = None
    thinking: str | None = None


class ToolFunction(msgspec.Struct):
    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None


class WireTool(msgspec.Struct):
    function: ToolFunction
    type: str = "function"


class Options(msgspec.Struct):
    """The sampling options an upstream can take; Ollama's runner options (num_ctx, num_gpu...)
    mean nothing to a hosted model and are ignored."""

    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    num_predict: int | None = None
    stop: list[str] | None = None
    seed: int | None = None


class ChatBody(msgspec.Struct):
    model: str
    messages: list[WireMessage] = msgspec.field(default_factory=list)
    tools: list[WireTool] | None = None
    format: str | dict[str, Any] | None = None
    options: Options | None = None
    stream: bool = True  # Ollama streams unless told not to
    keep_alive: str | float | None = None  # model residency: nothing to keep resident here
    think: bool | str | None = None


class ShowBody(msgspec.Struct):
    model: str | None = None
    name: str | None = None  # the older spelling


_chat_decoder = msgspec.json.Decoder(ChatBody)
_show_decoder = msgspec.json.Decoder(ShowBody)


# --- client side: parse ----------------------------------------------------------------------


def parse_request(body: bytes, model: str | None = None, stream: bool = False) -> ChatRequest:
    """`model` and `stream` come from the body; the arguments are the contract's, unused here."""
    wire = decode_body(_chat_decoder, body)
    if not wire.model:
        raise invalid("'model' is required.", "model")
    options = wire.options or Options()
    check_range(options.temperature, 0, 2, "temperature", "options.")
    check_range(options.top_p, 0, 1, "top_p", "options.")
    system: list[Text] = []
    messages = _messages_in(wire.messages, system)
    if not messages:
        raise invalid("'messages' must contain at least one user or assistant message.", "messages")
    max_tokens = options.num_predict if options.num_predict is not None and options.num_predict > 0 else None
    return ChatRequest(
        model=wire.model,
        messages=messages,
        system=system,
        tools=[_tool_in(t, i) for i, t in enumerate(wire.tools or [])],
        response_format=_format_in(wire.format),
        max_tokens=max_tokens,
        temperature=options.temperature,
        top_p=options.top_p,
        top_k=options.top_k,
        stop=options.stop or [],
        seed=options.seed,
        reasoning_effort=_effort_in(wire.think),
        stream=wire.stream,
        include_usage=True,  # the final object always carries the counts
    )


def _messages_in(wire: list[WireMessage], system: list[Text]) -> list[Message]:
    messages: list[Message] = []
    unanswered: list[ToolCall] = []
    for i, m in enumerate(wire):
        where = f"messages[{i}]"
        if m.images and m.role != "user":
            raise GatewayError("unsupported", f"Images are only supported in user messages, not '{m.role}'.",
                               param=f"{where}.images")
        if m.role == "system":
            system.append(Text(m.content))
        elif m.role == "user":
            parts: list[Part] = [_image_in(data, f"{where}.images[{j}]") for j, data in enumerate(m.images or [])]
            if m.content or not parts:
                parts.insert(0, Text(m.content))
            append_turn(messages, "user", parts)
        elif m.role == "assistant":
            calls = [ToolCall(id=c.id or f"call_{i}_{j}", name=c.function.name, arguments=_arguments(c.function))
                     for j, c in enumerate(m.tool_calls or [])]
            unanswered = list(calls)
            out: list[Part] = [Reasoning(text=m.thinking)] if m.thinking else []
            if m.content:
                out.append(Text(m.content))
            out.extend(calls)
            append_turn(messages, "assistant", out or [Text("")])
        else:
            call = _answered(unanswered, m.tool_name)
            if call is None:
                raise invalid("A 'tool' message must follow an assistant message with a matching tool call.",
                              f"{where}.tool_name")
            append_turn(messages, "user", [ToolResult(tool_call_id=call.id, content=m.content, name=call.name)])
    return messages


def _answered(unanswered: list[ToolCall], tool_name: str | None) -> ToolCall | None:
    for call in unanswered:
        if tool_name is None or call.name == tool_name:
            unanswered.remove(call)
            return call
    return None


def _arguments(function: FunctionCall) -> str:
    return function.arguments if isinstance(function.arguments, str) else dumps(function.arguments)


_MAGIC = (("iVBOR", "image/png"), ("/9j/", "image/jpeg"), ("R0lGOD", "image/gif"), ("UklGR", "image/webp"))


def _image_in(data: str, where: str) -> Image:
    if not data:
        raise invalid("An image must be base64 data.", where)
    media_type = next((kind for magic, kind in _MAGIC if data.startswith(magic)), None)
    if media_type is None:
        raise invalid("Images must be base64 PNG, JPEG, GIF or WebP.", where)
    return Image(data=data, media_type=media_type)


def _tool_in(tool: WireTool, i: int) -> Tool:
    if tool.type != "function":
        raise GatewayError("unsupported", f"Tools of type '{tool.type}' are not supported; only 'function' "
                           "tools are.", param=f"tools[{i}].type")
    f = tool.function
    return Tool(name=f.name, parameters=f.parameters or {"type": "object", "properties": {}},
                description=f.description)


def _format_in(fmt: str | dict[str, Any] | None) -> ResponseFormat | None:
    if fmt is None or fmt == "":
        return None
    if fmt == "json":
        return ResponseFormat(type="json_object")
    if isinstance(fmt, dict):
        return ResponseFormat(type="json_schema", name="response", schema=fmt)
    raise invalid("'format' must be \"json\" or a JSON schema.", "format")


def _effort_in(think: bool | str | None) -> str | None:
    """`think: true` is a medium effort; Ollama's levels are the effort names; false is none."""
    if think is None:
        return None
    if isinstance(think, bool):
        return "medium" if think else "none"
    if think not in ("low", "medium", "high"):
        raise invalid("'think' must be true, false, \"low\", \"medium\" or \"high\".", "think")
    return think


def parse_show_request(body: bytes) -> str:
    wire = decode_body(_show_decoder, body)
    model = wire.model or wire.name
    if not model:
        raise invalid("'model' is required.", "model")
    return model


# --- client side: render ---------------------------------------------------------------------


def _created_at() -> str:
    now = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1e6):06d}Z"


def _done_reason(finish: FinishReason) -> str:
    return "length" if finish == "max_tokens" else "stop"


def _final(model: str, message: dict[str, Any], finish: FinishReason, usage: Usage) -> dict[str, Any]:
    return {"model": model, "created_at": _created_at(), "message": message, "done": True,
            "done_reason": _done_reason(finish), "total_duration": 0, "load_duration": 0,
            "prompt_eval_count": usage.input_tokens, "prompt_eval_duration": 0,
            "eval_count": usage.output_tokens, "eval_duration": 0}


def _call_out(call: ToolCall) -> dict[str, Any]:
    return {"id": call.id, "function": {"name": call.name, "arguments": arguments_object(call.arguments)}}


def render_response(response: ChatResponse, model: str, request_id: str,
                    request: ChatRequest | None = None) -> bytes:
    message: dict[str, Any] = {"role": "assistant",
                               "content": "".join(p.text for p in response.content if isinstance(p, Text))}
    thinking = "".join(p.text for p in response.content if isinstance(p, Reasoning))
    if thinking:
        message["thinking"] = thinking
    calls = [_call_out(p) for p in response.content if isinstance(p, ToolCall)]
    if calls:
        message["tool_calls"] = calls
    return orjson.dumps(_final(model, message, response.finish_reason, response.usage))


def renderer(model: str, request_id: str, include_usage: bool,
             request: ChatRequest | None = None) -> StreamRenderer:
    return StreamRenderer(model)


class StreamRenderer:
    """Internal stream events -> Ollama stream objects: one per text or thinking delta, one per
    finished tool call (Ollama sends calls whole), then the `done` object."""

    def __init__(self, model: str) -> None:
        self._model = model
        self._calls: dict[int, ToolCall] = {}
        self._usage = Usage()
        self._done = False

    def _chunk(self, **message: Any) -> Rendered:
        body = {"model": self._model, "created_at": _created_at(),
                "message": {"role": "assistant", "content": "", **message}, "done": False}
        return [(None, orjson.dumps(body))]

    def render(self, event: StreamEvent) -> Rendered:
        if self._done:
            return []
        if isinstance(event, TextDelta):
            return self._chunk(content=event.text) if event.text else []
        if isinstance(event, ReasoningDelta):
            return self._chunk(thinking=event.text) if event.text else []
        if isinstance(event, BlockStart) and event.kind == "tool_call":
            self._calls[event.index] = ToolCall(event.id or f"call_{event.index}", event.name or "", "")
        elif isinstance(event, ToolArgsDelta) and event.index in self._calls:
            self._calls[event.index].arguments += event.json
        elif isinstance(event, BlockStop) and event.index in self._calls:
            return self._chunk(tool_calls=[_call_out(self._calls.pop(event.index))])
        elif isinstance(event, UsageEvent):
            self._usage = event.usage
        elif isinstance(event, MessageStop):
            self._done = True
            message = {"role": "assistant", "content": ""}
            return [(None, orjson.dumps(_final(self._model, message, event.finish_reason, self._usage)))]
        elif isinstance(event, StreamError):
            self._done = True
            return [(None, orjson.dumps({"error": event.error.message}))]
        elif isinstance(event, Complete):
            return replay(self.render, event.response)
        return []


def render_error(err: GatewayError) -> tuple[int, bytes, dict[str, str]]:
    headers: dict[str, str] = {}
    if err.retry_after is not None:
        headers["retry-after"] = str(max(1, round(err.retry_after)))
    return err.status, orjson.dumps({"error": err.message}), headers


# --- model list and details ------------------------------------------------------------------

_DETAILS = {"parent_model": "", "format": "", "family": "sluice", "families": ["sluice"],
            "parameter_size": "", "quantization_level": ""}
_MODIFIED = "2025-01-01T00:00:00Z"


def list_models(names: list[str]) -> bytes:
    models = [{"name": n, "model": n, "modified_at": _MODIFIED, "size": 0,
               "digest": hashlib.sha256(n.encode()).hexdigest(), "details": _DETAILS} for n in names]
    return orjson.dumps({"models": models})


def show_model(model: str) -> bytes:
    info = {"general.architecture": "sluice", "general.basename": model, "sluice.context_length": CONTEXT_LENGTH}
    return orjson.dumps({"modelfile": "", "parameters": "", "template": "", "details": _DETAILS,
                         "model_info": info, "capabilities": ["completion", "tools", "vision"],
                         "modified_at": _MODIFIED})


def version() -> bytes:
    return orjson.dumps({"version": API_VERSION})
