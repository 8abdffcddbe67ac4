"""Anthropic Messages, upstream side: ChatRequest -> a Messages body for api.anthropic.com; its
JSON answers and named-event SSE -> ChatResponse and stream events. Implements `UpstreamDialect`.

Answers decode into typed structs. Content blocks share one flat struct read by `type`, so a
block type this code does not know (a server tool's, a citation) is skipped, not a decode
failure; there is no such block unless a request asked for the tools that make them, and those
are refused on the way in. Lossy points are listed in docs/compatibility.md.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from shared.errors import GatewayError, unsupported
from shared.model import (
    BlockStart,
    BlockStop,
    ChatRequest,
    ChatResponse,
    Document,
    FinishReason,
    Image,
    Message,
    MessageStart,
    MessageStop,
    Part,
    Reasoning,
    ReasoningDelta,
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
from shared.protocols.anthropic_types import ERROR_TYPES, PROVIDER
from shared.protocols.common import PDF, PLAIN_TEXT, arguments_object, decode_answer, dumps, split_data_uri
from shared.protocols.errors_http import retry_after_from_headers, upstream_error
from shared.protocols.sse import SseFrame

API_VERSION = "2023-06-01"
IMAGE_MEDIA_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})

# reasoning_effort <-> thinking.budget_tokens (LiteLLM's table; Anthropic's minimum budget is 1024)
_BUDGETS = {"minimal": 1024, "low": 1024, "medium": 2048, "high": 4096}
_MIN_BUDGET = 1024


# --- request ---------------------------------------------------------------------------------


def headers(api_key: str) -> dict[str, str]:
    return {"x-api-key": api_key, "anthropic-version": API_VERSION, "content-type": "application/json"}


def build_request(req: ChatRequest, upstream_model: str, default_max_tokens: int = 4096) -> dict[str, Any]:
    if req.n > 1:
        raise unsupported("n", PROVIDER)
    max_tokens = req.max_tokens if req.max_tokens is not None else default_max_tokens
    body: dict[str, Any] = {"model": upstream_model, "max_tokens": max_tokens,
                            "messages": _messages_out(req.messages)}
    system = [{"type": "text", "text": t.text} for t in req.system if t.text]
    if system:
        body["system"] = system
    if req.stream:
        body["stream"] = True
    if req.stop:
        body["stop_sequences"] = req.stop
    if req.tools:
        body["tools"] = [_tool_out(t) for t in req.tools]
        choice = _tool_choice_out(req.tool_choice, req.parallel_tool_calls)
        if choice is not None:
            body["tool_choice"] = choice
    forced = req.tool_choice is not None and req.tool_choice.mode in ("required", "tool")
    effort = req.reasoning_effort
    budget = 0 if effort in (None, "none") else min(_BUDGETS.get(effort or "", 2048), max_tokens - 1)
    if budget >= _MIN_BUDGET and not forced:  # thinking refuses forced tool use and small max_tokens
        body["thinking"] = {"type": "enabled", "budget_tokens": budget}
    else:  # thinking refuses temperature, top_k and most top_p values: they only go without it
        if req.temperature is not None:
            body["temperature"] = min(1.0, max(0.0, req.temperature))
        elif req.top_p is not None:  # newer models refuse temperature and top_p together
            body["top_p"] = req.top_p
        if req.top_k is not None:
            body["top_k"] = req.top_k
    if req.response_format is not None:
        rf = req.response_format
        if rf.type == "json_object" or (rf.type == "json_schema" and rf.schema is None):
            raise GatewayError("unsupported", f"'response_format' {rf.type} without a schema cannot be sent "
                               f"to an {PROVIDER} upstream; use json_schema", param="response_format")
        if rf.type == "json_schema":
            body["output_config"] = {"format": {"type": "json_schema", "schema": rf.schema}}
    if req.user:
        body["metadata"] = {"user_id": req.user}
    return body  # seed is dropped: Anthropic has no equivalent


def _tool_out(tool: Tool) -> dict[str, Any]:
    schema = tool.parameters or {"type": "object", "properties": {}}
    out: dict[str, Any] = {"name": tool.name, "input_schema": schema}
    if tool.description is not None:
        out["description"] = tool.description
    return out


def _tool_choice_out(choice: ToolChoice | None, parallel: bool | None) -> dict[str, Any] | None:
    if choice is None:
        out: dict[str, Any] | None = {"type": "auto"} if parallel is False else None
    elif choice.mode == "tool":
        out = {"type": "tool", "name": choice.name}
    else:
        out = {"type": {"auto": "auto", "required": "any", "none": "none"}[choice.mode]}
    if out is not None and parallel is False and out["type"] != "none":
        out["disable_parallel_tool_use"] = True
    return out


def _image_out(image: Image) -> dict[str, Any]:
    if image.url is not None and not image.url.startswith("data:"):
        return {"type": "image", "source": {"type": "url", "url": image.url}}
    media_type, data = image.media_type, image.data
    if image.url is not None:  # a data: URI that was not split on the way in
        media_type, data = split_data_uri(image.url)
    if media_type not in IMAGE_MEDIA_TYPES:
        raise GatewayError("unsupported", f"image type '{media_type}' cannot be sent to an {PROVIDER} "
                           "upstream (jpeg, png, gif and webp only)", param="image")
    return {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}


def _document_out(doc: Document) -> dict[str, Any]:
    if doc.text is not None:
        source: dict[str, Any] = {"type": "text", "media_type": PLAIN_TEXT, "data": doc.text}
    elif doc.url is not None:
        source = {"type": "url", "url": doc.url}
    else:
        source = {"type": "base64", "media_type": doc.media_type or PDF, "data": doc.data}
    out: dict[str, Any] = {"type": "document", "source": source}
    if doc.title:
        out["title"] = doc.title
    return out


def _part_out(part: Part) -> dict[str, Any] | None:
    if isinstance(part, Text):
        return {"type": "text", "text": part.text} if part.text else None  # empty text is refused
    if isinstance(part, Image):
        return _image_out(part)
    if isinstance(part, Document):
        return _document_out(part)
    if isinstance(part, ToolCall):
        return {"type": "tool_use", "id": part.id, "name": part.name, "input": arguments_object(part.arguments)}
    if isinstance(part, ToolResult):
        out: dict[str, Any] = {"type": "tool_result", "tool_use_id": part.tool_call_id}
        if part.content:
            out["content"] = part.content
        if part.is_error:
            out["is_error"] = True
        return out
    # Reasoning: only Anthropic's own signed blocks go back, untouched; the rest is dropped.
    if part.provider != PROVIDER:
        return None
    if part.redacted is not None:
        return {"type": "redacted_thinking", "data": part.redacted}
    if part.signature:
        return {"type": "thinking", "thinking": part.text, "signature": part.signature}
    return None


def _messages_out(messages: list[Message]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for m in messages:
        blocks = [b for b in map(_part_out, m.content) if b is not None]
        if not blocks:
            continue  # an empty turn is refused; its neighbours merge instead
        if out and out[-1]["role"] == m.role:
            out[-1]["content"].extend(blocks)
        else:
            out.append({"role": m.role, "content": blocks})
    for turn in out:
        if turn["role"] == "user":  # tool_result blocks must lead their user turn
            turn["content"].sort(key=lambda b: b["type"] != "tool_result")
    if out and out[-1]["role"] == "assistant":  # a final assistant turn must not end in whitespace
        last = out[-1]["content"][-1]
        if last["type"] == "text":
            last["text"] = last["text"].rstrip()
            if not last["text"]:
                out[-1]["content"].pop()
                if not out[-1]["content"]:
                    out.pop()
    return out


# --- answers: wire structs -------------------------------------------------------------------


class _Block(msgspec.Struct):
    """A content block of any type (read by `type`), whole or as a stream's block start."""

    type: str = ""
    text: str | None = None
    id: str | None = None
    name: str | None = None
    input: dict[str, Any] | None = None  # a tool's arguments: open JSON
    thinking: str | None = None
    signature: str | None = None
    data: str | None = None  # redacted_thinking


class _Usage(msgspec.Struct):
    input_tokens: int | None = None
    output_tokens: int | None = None
    cache_read_input_tokens: int | None = None
    cache_creation_input_tokens: int | None = None

    def newer(self, later: _Usage) -> _Usage:
        """A message_delta's counts are cumulative: they replace, never add; absent ones keep ours."""
        return _Usage(*(new if new is not None else old for old, new in
                        zip(msgspec.structs.astuple(self), msgspec.structs.astuple(later), strict=True)))

    def usage(self) -> Usage:
        read = self.cache_read_input_tokens or 0
        written = self.cache_creation_input_tokens or 0
        return Usage(input_tokens=(self.input_tokens or 0) + written + read,
                     output_tokens=self.output_tokens or 0, cached_input_tokens=read)


class _Message(msgspec.Struct):
    id: str | None = None
    model: str | None = None
    content: list[_Block] = msgspec.field(default_factory=list)
    stop_reason: str | None = None
    stop_sequence: str | None = None
    usage: _Usage | None = None


class _Delta(msgspec.Struct):
    """A content_block_delta's or message_delta's `delta`."""

    type: str | None = None
    text: str | None = None
    partial_json: str | None = None
    thinking: str | None = None
    signature: str | None = None
    stop_reason: str | None = None
    stop_sequence: str | None = None


class _Error(msgspec.Struct):
    type: str | None = None
    message: Any = None


class _Event(msgspec.Struct):
    """Every stream event, read by `type` (or the SSE event name)."""

    type: str | None = None
    message: _Message | None = None
    index: int = 0
    content_block: _Block | None = None
    delta: _Delta | None = None
    usage: _Usage | None = None
    error: _Error | str | None = None


class _ErrorBody(msgspec.Struct):
    error: _Error | None = None


_message_decoder = msgspec.json.Decoder(_Message)
_event_decoder = msgspec.json.Decoder(_Event)
_error_decoder = msgspec.json.Decoder(_ErrorBody)

_FINISH_IN: dict[str, FinishReason] = {
    "end_turn": "end_turn", "stop_sequence": "stop_sequence", "max_tokens": "max_tokens",
    "tool_use": "tool_use", "refusal": "content_filter", "pause_turn": "end_turn",
    "model_context_window_exceeded": "max_tokens"}
_BLOCK_KINDS: dict[str, Literal["text", "tool_call", "reasoning"]] = {
    "text": "text", "tool_use": "tool_call", "thinking": "reasoning"}
_ERROR_STATUS = {v: k for k, v in ERROR_TYPES.items() if k not in (502, 503)}


# --- answers: parse --------------------------------------------------------------------------


def _finish_in(stop_reason: str | None, saw_tool: bool) -> FinishReason:
    finish = _FINISH_IN.get(stop_reason or "end_turn", "end_turn")
    return "tool_use" if saw_tool and finish == "end_turn" else finish


def _content_in(block: _Block) -> Part | None:
    if block.type == "text":
        return Text(block.text or "")
    if block.type == "tool_use":
        return ToolCall(id=block.id or "", name=block.name or "", arguments=dumps(block.input or {}))
    if block.type == "thinking":
        return Reasoning(text=block.thinking or "", signature=block.signature or None, provider=PROVIDER)
    if block.type == "redacted_thinking":
        return Reasoning(redacted=block.data or "", provider=PROVIDER)
    return None  # server tool blocks: only made for server tools, which are refused on the way in


def parse_response(body: bytes) -> ChatResponse:
    data = decode_answer(_message_decoder, body)
    parts = [p for p in map(_content_in, data.content) if p is not None]
    finish = _finish_in(data.stop_reason, any(isinstance(p, ToolCall) for p in parts))
    return ChatResponse(id=data.id or "", model=data.model or "", content=parts, finish_reason=finish,
                        usage=data.usage.usage() if data.usage else Usage(),
                        stop_sequence=data.stop_sequence if finish == "stop_sequence" else None)


def _error_in(status: int, message: str, headers: dict[str, str] | None = None) -> GatewayError:
    return upstream_error(status, message, retry_after_from_headers(headers or {}))


def stream_parser() -> StreamParser:
    return StreamParser()


class StreamParser:
    """Anthropic SSE frames -> internal events. One instance per upstream stream."""

    def __init__(self) -> None:
        self._blocks: dict[int, int] = {}  # upstream index -> internal index (skipped blocks absent)
        self._kinds: dict[int, str] = {}  # internal index -> kind
        self._has_args: set[int] = set()
        self._open: set[int] = set()
        self._usage = _Usage()
        self._stop_reason: str | None = None
        self._stop_sequence: str | None = None
        self._saw_tool = False
        self.done = False

    def feed(self, frame: SseFrame) -> list[StreamEvent]:
        if self.done:
            return []
        try:
            data = decode_answer(_event_decoder, frame.data)
        except GatewayError as unreadable:
            self.done = True
            return [StreamError(unreadable.info())]
        kind = frame.event or data.type
        if kind == "content_block_delta":
            return self._delta(data.index, data.delta or _Delta())
        if kind == "content_block_start":
            return self._block_start(data.index, data.content_block or _Block())
        if kind == "content_block_stop":
            index = self._blocks.get(data.index)
            return self._stop(index) if index is not None and index in self._open else []
        if kind == "message_start":
            message = data.message or _Message()
            self._usage = self._usage.newer(message.usage or _Usage())
            return [MessageStart(id=message.id or "", model=message.model or "",
                                 input_tokens=self._usage.usage().input_tokens)]
        if kind == "message_delta":
            delta = data.delta or _Delta()
            self._stop_reason = delta.stop_reason or self._stop_reason
            self._stop_sequence = delta.stop_sequence
            if data.usage is not None:
                self._usage = self._usage.newer(data.usage)
            return []
        if kind == "message_stop":
            self.done = True
            out: list[StreamEvent] = []
            for index in sorted(self._open):
                out += self._stop(index)
            finish = _finish_in(self._stop_reason, self._saw_tool)
            stop_sequence = self._stop_sequence if finish == "stop_sequence" else None
            return [*out, UsageEvent(self._usage.usage()), MessageStop(finish, stop_sequence)]
        if kind == "error":
            self.done = True
            err = data.error
            if isinstance(err, _Error):
                status, text = _ERROR_STATUS.get(err.type or "", 500), str(err.message or err.type)
            else:
                status, text = 500, str(err)
            return [StreamError(_error_in(status, text).info())]
        return []  # ping and unknown events

    def _block_start(self, upstream: int, block: _Block) -> list[StreamEvent]:
        if block.type == "redacted_thinking":  # whole at its start: one delta, no BlockStart
            index = self._new_block(upstream, "redacted")
            return [ReasoningDelta(index, redacted=block.data or "", provider=PROVIDER)]
        kind = _BLOCK_KINDS.get(block.type)
        if kind is None:
            return []  # server-tool blocks: only made for server tools, which are refused on the way in
        index = self._new_block(upstream, kind)
        out: list[StreamEvent] = [BlockStart(index, kind, block.id, block.name)]
        if kind == "tool_call":
            self._saw_tool = True
            if block.input:  # only a non-empty start input counts; the usual {} is not prepended
                self._has_args.add(index)
                out.append(ToolArgsDelta(index, dumps(block.input)))
        elif kind == "text" and block.text:
            out.append(TextDelta(index, block.text))
        elif kind == "reasoning" and (block.thinking or block.signature):
            out.append(ReasoningDelta(index, block.thinking or "", block.signature or None,
                                      provider=PROVIDER if block.signature else None))
        return out

    def _new_block(self, upstream: int, kind: str) -> int:
        index = self._blocks[upstream] = len(self._kinds)
        self._kinds[index] = kind
        self._open.add(index)
        return index

    def _delta(self, upstream: int, delta: _Delta) -> list[StreamEvent]:
        index = self._blocks.get(upstream)
        if index is None:
            return []
        dtype = delta.type
        if dtype == "text_delta" and delta.text:
            return [TextDelta(index, delta.text)]
        if dtype == "input_json_delta" and delta.partial_json:
            self._has_args.add(index)
            return [ToolArgsDelta(index, delta.partial_json)]
        if dtype == "thinking_delta" and delta.thinking:
            return [ReasoningDelta(index, delta.thinking)]
        if dtype == "signature_delta" and delta.signature:
            return [ReasoningDelta(index, signature=delta.signature, provider=PROVIDER)]
        return []  # citations_delta and empty fragments

    def _stop(self, index: int) -> list[StreamEvent]:
        self._open.discard(index)
        if self._kinds[index] == "tool_call" and index not in self._has_args:
            return [ToolArgsDelta(index, "{}"), BlockStop(index)]  # no-argument call: "{}", not ""
        return [BlockStop(index)]

    def finish(self) -> list[StreamEvent]:
        if self.done:
            return []
        self.done = True
        return [StreamError(GatewayError("upstream_unavailable", "the upstream stream ended before "
                                         "message_stop", retryable=True).info())]


def parse_error(status: int, body: bytes, headers: dict[str, str]) -> GatewayError:
    message = body[:500].decode(errors="replace")
    try:
        data = _error_decoder.decode(body)
    except msgspec.DecodeError:  # not JSON, or no error object: the raw text is the message
        pass
    else:
        if data.error is not None and data.error.message:
            message = str(data.error.message)
    return _error_in(status, message, headers)
