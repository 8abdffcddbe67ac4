"""OpenAI Chat Completions, client side: implements `ClientDialect`.

A client's `POST /v1/chat/completions` body -> ChatRequest; ChatResponse and stream events ->
OpenAI's JSON and `data:`-only SSE ending in `[DONE]`. The upstream side (this format spoken to
OpenAI and compatible servers) is `openai_chat_upstream.py`.
"""

from __future__ import annotations

import time
from typing import Any, Literal

import msgspec
import orjson

from shared.errors import GatewayError, invalid
from shared.model import (
    BlockStart,
    ChatRequest,
    ChatResponse,
    Complete,
    Document,
    Message,
    MessageStart,
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
    ToolChoice,
    ToolResult,
    Usage,
    UsageEvent,
)
from shared.protocols.common import (
    append_turn,
    check_range,
    decode_body,
    document_from_data_uri,
    image_from_url,
    replay,
)
from shared.protocols.contracts import Rendered
from shared.protocols.sse import KEEPALIVE

# --- wire types (client -> us) ---------------------------------------------------------------


class _TextPart(msgspec.Struct, tag_field="type", tag="text"):
    text: str


class _ImageUrl(msgspec.Struct):
    url: str
    detail: str | None = None


class _ImagePart(msgspec.Struct, tag_field="type", tag="image_url"):
    image_url: _ImageUrl


class _File(msgspec.Struct):
    file_data: str | None = None  # data:application/pdf;base64,...
    filename: str | None = None
    file_id: str | None = None


class _FilePart(msgspec.Struct, tag_field="type", tag="file"):
    file: _File

    def part(self, where: str) -> Part:
        f = self.file
        if f.file_id is not None:  # resolved from the tenant's Files store by the API
            return Document(file_id=f.file_id, title=f.filename)
        if f.file_data is None:
            raise invalid("'file.file_data' or 'file.file_id' is required.", f"{where}.file_data")
        return document_from_data_uri(f.file_data, f.filename, f"{where}.file_data")


class _RefusalPart(msgspec.Struct, tag_field="type", tag="refusal"):
    refusal: str


class _Function(msgspec.Struct):
    name: str
    arguments: str = ""


class _ToolCall(msgspec.Struct):
    id: str
    function: _Function
    type: str = "function"


class _System(msgspec.Struct, tag_field="role", tag="system"):
    content: str | list[_TextPart]
    name: str | None = None


class _Developer(msgspec.Struct, tag_field="role", tag="developer"):
    content: str | list[_TextPart]
    name: str | None = None


class _User(msgspec.Struct, tag_field="role", tag="user"):
    content: str | list[_TextPart | _ImagePart | _FilePart]
    name: str | None = None


class _Assistant(msgspec.Struct, tag_field="role", tag="assistant"):
    content: str | list[_TextPart | _RefusalPart] | None = None
    tool_calls: list[_ToolCall] | None = None
    reasoning_content: str | None = None
    name: str | None = None
    refusal: str | None = None


class _ToolMessage(msgspec.Struct, tag_field="role", tag="tool"):
    content: str | list[_TextPart]
    tool_call_id: str


_WireMessage = _System | _Developer | _User | _Assistant | _ToolMessage


class _FunctionDef(msgspec.Struct):
    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class _ToolDef(msgspec.Struct):
    function: _FunctionDef
    type: str = "function"


class _NamedFunction(msgspec.Struct):
    name: str


class _ToolChoiceObject(msgspec.Struct):
    function: _NamedFunction
    type: str = "function"


class _JsonSchema(msgspec.Struct):
    name: str = "response"
    schema: dict[str, Any] | None = None
    strict: bool | None = None
    description: str | None = None


class _ResponseFormat(msgspec.Struct):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: _JsonSchema | None = None


class _StreamOptions(msgspec.Struct):
    include_usage: bool = False


class _Request(msgspec.Struct):
    model: str
    messages: list[_WireMessage]
    stream: bool | None = False
    stream_options: _StreamOptions | None = None
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    n: int | None = None
    stop: str | list[str] | None = None
    seed: int | None = None
    tools: list[_ToolDef] | None = None
    tool_choice: Literal["none", "auto", "required"] | _ToolChoiceObject | None = None
    parallel_tool_calls: bool | None = None
    response_format: _ResponseFormat | None = None
    reasoning_effort: str | None = None
    user: str | None = None


_request_decoder = msgspec.json.Decoder(_Request)


# --- client side: parse ----------------------------------------------------------------------


name = "openai_chat"
sse_ids = True
keepalive = KEEPALIVE


MAX_CHOICES = 128  # OpenAI's own limit on `n`


def parse_request(body: bytes, model: str | None = None, stream: bool = False) -> ChatRequest:
    """`model` and `stream` come from the body; the arguments are the contract's, unused here."""
    wire = decode_body(_request_decoder, body)
    if not wire.messages:
        raise invalid("'messages' must contain at least one message.", "messages")
    check_range(wire.temperature, 0, 2, "temperature")
    check_range(wire.top_p, 0, 1, "top_p")
    n = wire.n if wire.n is not None else 1
    if not 1 <= n <= MAX_CHOICES:  # each choice is a whole answer reserved, generated and held
        raise invalid(f"'n' must be between 1 and {MAX_CHOICES}.", "n")
    max_tokens = wire.max_completion_tokens if wire.max_completion_tokens is not None else wire.max_tokens
    if max_tokens is not None and max_tokens < 1:
        raise invalid("'max_tokens' must be at least 1.", "max_tokens")
    system, messages = _messages_in(wire.messages)
    return ChatRequest(
        model=wire.model,
        messages=messages,
        system=system,
        tools=[
            Tool(
                name=t.function.name,
                parameters=t.function.parameters or {"type": "object", "properties": {}},
                description=t.function.description,
                strict=t.function.strict,
            )
            for t in wire.tools or []
        ],
        tool_choice=_tool_choice_in(wire.tool_choice),
        parallel_tool_calls=wire.parallel_tool_calls,
        response_format=_response_format_in(wire.response_format),
        max_tokens=max_tokens,
        temperature=wire.temperature,
        top_p=wire.top_p,
        stop=[wire.stop] if isinstance(wire.stop, str) else list(wire.stop or []),
        n=n,
        seed=wire.seed,
        reasoning_effort=wire.reasoning_effort,
        stream=bool(wire.stream),
        include_usage=bool(wire.stream_options and wire.stream_options.include_usage),
        user=wire.user,
    )


def _text_of(content: str | list[_TextPart] | list[_TextPart | _RefusalPart] | None) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "".join(p.text if isinstance(p, _TextPart) else p.refusal for p in content)


def _messages_in(wire: list[_WireMessage]) -> tuple[list[Text], list[Message]]:
    # System and developer messages are hoisted to the system prompt, in order: every other
    # dialect keeps it apart from the turns (documented in docs/compatibility.md).
    system: list[Text] = []
    messages: list[Message] = []
    for i, m in enumerate(wire):
        if isinstance(m, _System | _Developer):
            system.append(Text(_text_of(m.content)))
        elif isinstance(m, _User):
            parts: list[Part] = []
            if isinstance(m.content, str):
                parts.append(Text(m.content))
            else:
                for j, p in enumerate(m.content):
                    parts.append(Text(p.text) if isinstance(p, _TextPart)
                                 else p.part(f"messages[{i}].content[{j}].file") if isinstance(p, _FilePart)
                                 else image_from_url(p.image_url.url))
            append_turn(messages, "user", parts)
        elif isinstance(m, _Assistant):
            parts = []
            if m.reasoning_content:
                parts.append(Reasoning(text=m.reasoning_content))
            text = _text_of(m.content)
            if text:
                parts.append(Text(text))
            for call in m.tool_calls or []:
                parts.append(ToolCall(id=call.id, name=call.function.name, arguments=call.function.arguments))
            append_turn(messages, "assistant", parts)
        else:
            append_turn(messages, "user", [ToolResult(tool_call_id=m.tool_call_id, content=_text_of(m.content))])
    return system, messages


def _tool_choice_in(choice: str | _ToolChoiceObject | None) -> ToolChoice | None:
    if choice is None:
        return None
    if isinstance(choice, str):
        return ToolChoice(mode=choice)  # type: ignore[arg-type]
    return ToolChoice(mode="tool", name=choice.function.name)


def _response_format_in(rf: _ResponseFormat | None) -> ResponseFormat | None:
    if rf is None or rf.type == "text":
        return None
    if rf.type == "json_schema":
        if rf.json_schema is None:
            raise invalid("'response_format.json_schema' is required for type json_schema.",
                          "response_format.json_schema")
        return ResponseFormat(
            type="json_schema", name=rf.json_schema.name, schema=rf.json_schema.schema,
            strict=rf.json_schema.strict,
        )
    return ResponseFormat(type="json_object")


# --- client side: render ---------------------------------------------------------------------

_FINISH_OUT: dict[str, str] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
    "content_filter": "content_filter",
    "error": "stop",
}


def _usage_out(usage: Usage) -> dict[str, Any]:
    return {
        "prompt_tokens": usage.input_tokens,
        "completion_tokens": usage.output_tokens,
        "total_tokens": usage.input_tokens + usage.output_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cached_input_tokens},
        "completion_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
    }


def tool_call_out(call: ToolCall) -> dict[str, Any]:
    return {"id": call.id, "type": "function", "function": {"name": call.name, "arguments": call.arguments}}


def render_response(response: ChatResponse, model: str, request_id: str,
                    request: ChatRequest | None = None) -> bytes:
    text = "".join(p.text for p in response.content if isinstance(p, Text))
    reasoning = "".join(p.text for p in response.content if isinstance(p, Reasoning))
    calls = [tool_call_out(p) for p in response.content if isinstance(p, ToolCall)]
    message: dict[str, Any] = {"role": "assistant", "content": text or (None if calls else ""), "refusal": None}
    if calls:
        message["tool_calls"] = calls
    if reasoning:
        message["reasoning_content"] = reasoning
    finish = "tool_calls" if calls else _FINISH_OUT[response.finish_reason]
    return orjson.dumps(
        {
            "id": f"chatcmpl-{request_id}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
            "usage": _usage_out(response.usage),
        }
    )


def renderer(model: str, request_id: str, include_usage: bool,
             request: ChatRequest | None = None) -> StreamRenderer:
    return StreamRenderer(model, request_id, include_usage)


class StreamRenderer:
    """Internal stream events -> OpenAI `chat.completion.chunk` SSE payloads (data only)."""

    def __init__(self, model: str, request_id: str, include_usage: bool) -> None:
        self._model, self._request_id = model, request_id
        self._head = self._make_head(int(time.time()))
        self._tail = b',"usage":null}' if include_usage else b"}"
        self._include_usage = include_usage
        self._tool_index: dict[int, int] = {}  # block index -> OpenAI tool_calls[].index
        self._usage = Usage()
        self._saw_tool = False

    def _make_head(self, created: int) -> bytes:
        # Every chunk shares this prefix; building it once saves a dict and a dump per chunk.
        return (
            f'{{"id":"chatcmpl-{self._request_id}","object":"chat.completion.chunk","created":{created},'
            f'"model":{orjson.dumps(self._model).decode()},"system_fingerprint":null,"choices":'
        ).encode()

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return self._head + orjson.dumps([choice]) + self._tail

    def render(self, event: StreamEvent) -> Rendered:
        """Returns (SSE event name, data) pairs; OpenAI uses no event names."""
        if isinstance(event, TextDelta):
            return [(None, self._chunk({"content": event.text}))]
        if isinstance(event, ToolArgsDelta):
            index = self._tool_index.get(event.index, 0)
            return [(None, self._chunk({"tool_calls": [{"index": index, "function": {"arguments": event.json}}]}))]
        if isinstance(event, MessageStart):
            if event.timing is not None and event.timing.done_at > 0:
                # the worker's stamp, kept in the record: a replay (resume, Idempotency-Key retry)
                # renders the same `created` as the live stream, so its frames are byte-identical
                self._head = self._make_head(int(event.timing.done_at))
            return [(None, self._chunk({"role": "assistant", "content": ""}))]
        if isinstance(event, BlockStart) and event.kind == "tool_call":
            self._saw_tool = True
            index = self._tool_index[event.index] = len(self._tool_index)
            call = {"index": index, "id": event.id, "type": "function",
                    "function": {"name": event.name, "arguments": ""}}
            return [(None, self._chunk({"tool_calls": [call]}))]
        if isinstance(event, ReasoningDelta):
            return [(None, self._chunk({"reasoning_content": event.text}))] if event.text else []
        if isinstance(event, UsageEvent):
            self._usage = event.usage
            return []
        if isinstance(event, MessageStop):
            finish = "tool_calls" if self._saw_tool else _FINISH_OUT[event.finish_reason]
            out: Rendered = [(None, self._chunk({}, finish))]
            if self._include_usage:
                out.append((None, self._head + b"[]" + b',"usage":' + orjson.dumps(_usage_out(self._usage)) + b"}"))
            out.append((None, b"[DONE]"))
            return out
        if isinstance(event, StreamError):
            err = GatewayError.from_info(event.error)
            return [(None, orjson.dumps(_error_body(err))), (None, b"[DONE]")]
        if isinstance(event, Complete):  # a non-streamed answer relayed to a stream: replay it
            return replay(self.render, event.response)
        return []


_ERROR_TYPES = {
    "invalid_request": ("invalid_request_error", None),
    "unsupported": ("invalid_request_error", "unsupported_parameter"),
    "unauthenticated": ("invalid_request_error", "invalid_api_key"),
    "permission_denied": ("permission_error", None),
    "not_found": ("invalid_request_error", "model_not_found"),
    "rate_limited": ("rate_limit_error", "rate_limit_exceeded"),
    "quota_exceeded": ("insufficient_quota", "insufficient_quota"),
    "request_too_large": ("invalid_request_error", "request_too_large"),
    "request_timeout": ("invalid_request_error", "request_timeout"),  # what OpenAI says when credit is spent
    "upstream_rejected": ("invalid_request_error", None),
}


def _error_body(err: GatewayError) -> dict[str, Any]:
    etype, code = _ERROR_TYPES.get(err.kind, ("server_error", err.kind))
    return {"error": {"message": err.message, "type": etype, "param": err.param, "code": code}}


def render_error(err: GatewayError) -> tuple[int, bytes, dict[str, str]]:
    headers: dict[str, str] = {}
    if err.retry_after is not None:
        headers["retry-after"] = str(max(1, round(err.retry_after)))
        headers["retry-after-ms"] = str(int(err.retry_after * 1000))
    return err.status, orjson.dumps(_error_body(err)), headers
