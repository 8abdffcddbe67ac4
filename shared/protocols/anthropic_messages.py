"""Anthropic Messages, both directions.

Client side: a client's `POST /v1/messages` body -> ChatRequest; ChatResponse and stream events
-> Anthropic's JSON and named-event SSE (`event: message_start` ... `event: message_stop`).
Upstream side: ChatRequest -> a Messages body for api.anthropic.com; its JSON and SSE events ->
ChatResponse and stream events. Lossy points are listed in docs/compatibility.md.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import msgspec
import orjson

from shared.errors import GatewayError, field_of, invalid, unsupported
from shared.model import (
    BlockStart,
    BlockStop,
    ChatRequest,
    ChatResponse,
    Complete,
    FinishReason,
    Image,
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
from shared.protocols import anthropic_types as w
from shared.protocols.errors_http import retry_after_from_headers, upstream_error
from shared.protocols.sse import SseFrame
from shared.tokens import estimate_input_tokens

PROVIDER = w.PROVIDER
API_VERSION = "2023-06-01"
IMAGE_MEDIA_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})

# reasoning_effort <-> thinking.budget_tokens (LiteLLM's table; Anthropic's minimum budget is 1024)
_BUDGETS = {"minimal": 1024, "low": 1024, "medium": 2048, "high": 4096}
_MIN_BUDGET = 1024


# --- client side: parse ----------------------------------------------------------------------


def parse_request(body: bytes) -> ChatRequest:
    return _parse(body, require_max_tokens=True)


def parse_count_tokens_request(body: bytes) -> ChatRequest:
    """`POST /v1/messages/count_tokens` takes a Messages body without `max_tokens`."""
    return _parse(body, require_max_tokens=False)


def _parse(body: bytes, *, require_max_tokens: bool) -> ChatRequest:
    try:
        wire = w.request_decoder.decode(body)
    except msgspec.ValidationError as exc:
        raise invalid(f"Invalid request body: {exc}", field_of(exc)) from None
    except msgspec.DecodeError:
        raise invalid("The request body is not valid JSON.") from None
    if not wire.messages:
        raise invalid("'messages' must contain at least one message.", "messages")
    if wire.max_tokens is None:
        if require_max_tokens:
            raise invalid("'max_tokens' is required.", "max_tokens")
    elif wire.max_tokens < 1:
        raise invalid("'max_tokens' must be at least 1.", "max_tokens")
    for name, value in (("temperature", wire.temperature), ("top_p", wire.top_p)):
        if value is not None and not 0 <= value <= 1:
            raise invalid(f"'{name}' must be between 0 and 1.", name)
    if wire.top_k is not None and wire.top_k < 0:
        raise invalid("'top_k' must not be negative.", "top_k")
    tools: list[Tool] = []
    for i, t in enumerate(wire.tools or []):
        if t.type not in (None, "custom") or t.input_schema is None:
            raise invalid(f"tools[{i}] ('{t.name}', type {t.type or 'custom'}): only custom tools "
                          "with an 'input_schema' are supported.",
                          f"tools[{i}].input_schema" if t.type in (None, "custom") else f"tools[{i}].type")
        tools.append(Tool(name=t.name, parameters=t.input_schema, description=t.description, strict=t.strict))
    choice = wire.tool_choice
    parallel = False if choice is not None and choice.disable_parallel_tool_use else None
    blocks = [w.TextBlock(wire.system)] if isinstance(wire.system, str) else wire.system or []
    system = [Text(b.text) for b in blocks if b.text]
    messages = _messages_in(wire.messages, system)
    if not messages:
        raise invalid("'messages' must contain at least one user or assistant message.", "messages")
    fmt = wire.output_config.format if wire.output_config else None
    return ChatRequest(
        model=wire.model, messages=messages, system=system, tools=tools,
        tool_choice=choice.to_internal() if choice else None, parallel_tool_calls=parallel,
        response_format=ResponseFormat(type="json_schema", schema=fmt.schema) if fmt else None,
        max_tokens=wire.max_tokens, temperature=wire.temperature, top_p=wire.top_p, top_k=wire.top_k,
        stop=list(wire.stop_sequences or []), reasoning_effort=_effort_in(wire), stream=bool(wire.stream),
        include_usage=bool(wire.stream),  # Anthropic streams always carry usage
        user=wire.metadata.user_id if wire.metadata else None,
    )


def _effort_in(wire: w.Request) -> str | None:
    thinking = wire.thinking
    if isinstance(thinking, w.ThinkingEnabled):
        if thinking.budget_tokens < 1:
            raise invalid("'thinking.budget_tokens' must be positive.", "thinking.budget_tokens")
        budget = thinking.budget_tokens
        return "low" if budget <= 1024 else "medium" if budget <= 2048 else "high"
    if isinstance(thinking, w.ThinkingAdaptive):
        effort = (wire.output_config.effort if wire.output_config else None) or "medium"
        return "high" if effort == "max" else effort
    return None


def _messages_in(wire: list[w.MessageParam], system: list[Text]) -> list[Message]:
    messages: list[Message] = []
    for i, m in enumerate(wire):
        blocks: list[w.Block] = [w.TextBlock(m.content)] if isinstance(m.content, str) else m.content
        if m.role == "system":  # hoisted to the system prompt, in order (as OpenAI's system messages are)
            if not all(isinstance(b, w.TextBlock) for b in blocks):
                raise invalid("A 'system' message may hold text blocks only.", f"messages[{i}].content")
            system.extend(Text(b.text) for b in blocks if isinstance(b, w.TextBlock) and b.text)
            continue
        parts = [p for b in blocks for p in b.parts()]
        if messages and messages[-1].role == m.role:  # consecutive same-role turns merge
            messages[-1].content.extend(parts)
        else:
            messages.append(Message(role=m.role, content=parts))
    return messages


# --- client side: render ---------------------------------------------------------------------

_STOP_OUT: dict[str, str] = {"end_turn": "end_turn", "stop_sequence": "stop_sequence",
                              "max_tokens": "max_tokens", "tool_use": "tool_use",
                              "content_filter": "refusal", "error": "end_turn"}


def _stop_reason_out(finish: FinishReason, saw_tool: bool) -> str:
    # Tool use is derived from content, except where the reported reason says more (truncation).
    if saw_tool and finish in ("end_turn", "tool_use", "error"):
        return "tool_use"
    if finish == "tool_use":
        return "end_turn"
    return _STOP_OUT[finish]


def _usage_out(usage: Usage) -> dict[str, int]:
    return {"input_tokens": max(0, usage.input_tokens - usage.cached_input_tokens),
            "output_tokens": usage.output_tokens, "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": usage.cached_input_tokens}


def _input_object(arguments: str) -> dict[str, Any]:
    """Tool-call JSON text -> an `input` object; invalid or non-object JSON gives {}."""
    try:
        value = orjson.loads(arguments) if arguments.strip() else {}
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def _signature_out(part: Reasoning) -> str:
    # Only Anthropic's own signatures are shown: a client echoes them back as Anthropic's.
    return (part.signature or "") if part.provider in (None, PROVIDER) else ""


def _block_out(part: Part) -> dict[str, Any] | None:
    if isinstance(part, Text):
        return {"type": "text", "text": part.text}
    if isinstance(part, ToolCall):
        return {"type": "tool_use", "id": part.id, "name": part.name, "input": _input_object(part.arguments)}
    if isinstance(part, Reasoning):
        if part.redacted is not None:
            return {"type": "redacted_thinking", "data": part.redacted}
        return {"type": "thinking", "thinking": part.text, "signature": _signature_out(part)}
    return None


def render_response(response: ChatResponse, model: str, request_id: str) -> bytes:
    content = [b for b in map(_block_out, response.content) if b is not None]
    saw_tool = any(isinstance(p, ToolCall) for p in response.content)
    stop_reason = _stop_reason_out(response.finish_reason, saw_tool)
    return orjson.dumps({
        "id": f"msg_{request_id}", "type": "message", "role": "assistant", "model": model, "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": response.stop_sequence if stop_reason == "stop_sequence" else None,
        "usage": _usage_out(response.usage),
    })


_Out = list[tuple[str | None, bytes]]


def _event(name: str, payload: dict[str, Any]) -> tuple[str | None, bytes]:
    return name, orjson.dumps({"type": name, **payload})


class StreamRenderer:
    """Internal stream events -> Anthropic named SSE events with Anthropic's own block indexes."""

    def __init__(self, model: str, request_id: str, include_usage: bool) -> None:
        self._model = model
        self._id = f"msg_{request_id}"
        self._started = False
        self._done = False
        self._blocks: dict[int, int] = {}  # internal block index -> Anthropic index
        self._kinds: dict[int, str] = {}  # Anthropic index -> "text" | "tool_call" | "reasoning"
        self._open: int | None = None  # Anthropic index of the open block
        self._has_args: set[int] = set()
        self._sealed: set[int] = set()  # redacted_thinking blocks: whole at their start
        self._foreign: set[int] = set()  # thinking signed by another provider: its signature is not shown
        self._saw_tool = False
        self._usage = Usage()
        # include_usage is ignored: Anthropic streams always carry usage.

    def _start(self, input_tokens: int = 0) -> _Out:
        if self._started:
            return []
        self._started = True
        usage = _usage_out(Usage(input_tokens=input_tokens, output_tokens=1))
        message: dict[str, Any] = {"id": self._id, "type": "message", "role": "assistant",
                                   "model": self._model, "content": [], "stop_reason": None,
                                   "stop_sequence": None, "usage": usage}
        return [_event("message_start", {"message": message}), _event("ping", {})]

    def _open_block(self, internal: int, kind: str, call_id: str | None = None,
                    name: str | None = None, redacted: str | None = None) -> _Out:
        out = self._start() + self._close()
        index = self._blocks[internal] = len(self._kinds)
        self._kinds[index] = kind
        self._open = index
        if redacted is not None:
            block: dict[str, Any] = {"type": "redacted_thinking", "data": redacted}
        elif kind == "tool_call":
            self._saw_tool = True
            block = {"type": "tool_use", "id": call_id or f"toolu_{index}", "name": name or "", "input": {}}
        elif kind == "reasoning":
            block = {"type": "thinking", "thinking": "", "signature": ""}
        else:
            block = {"type": "text", "text": ""}
        return [*out, _event("content_block_start", {"index": index, "content_block": block})]

    def _close(self) -> _Out:
        index, self._open = self._open, None
        if index is None:
            return []
        out: _Out = []
        if self._kinds[index] == "tool_call" and index not in self._has_args:
            # No argument deltas: send "{}" so clients that concatenate partial_json get valid JSON.
            out.append(self._delta(index, {"type": "input_json_delta", "partial_json": "{}"}))
        return [*out, _event("content_block_stop", {"index": index})]

    def _delta(self, index: int, delta: dict[str, Any]) -> tuple[str | None, bytes]:
        return _event("content_block_delta", {"index": index, "delta": delta})

    def _block(self, internal: int, kind: str) -> tuple[int, _Out]:
        """The Anthropic index for a delta, opening a block when the delta arrives without one."""
        out = self._open_block(internal, kind) if internal not in self._blocks else []
        return self._blocks[internal], out

    def render(self, event: StreamEvent) -> list[tuple[str | None, bytes]]:
        """Returns (SSE event name, data) pairs."""
        if self._done:
            return []
        if isinstance(event, TextDelta):
            index, out = self._block(event.index, "text")
            return [*out, self._delta(index, {"type": "text_delta", "text": event.text})]
        if isinstance(event, ToolArgsDelta):
            index, out = self._block(event.index, "tool_call")
            if not event.json:
                return out
            self._has_args.add(index)
            return [*out, self._delta(index, {"type": "input_json_delta", "partial_json": event.json})]
        if isinstance(event, ReasoningDelta):
            index, out = self._block(event.index, "reasoning")
            if index in self._sealed:
                return out  # a redacted block, or another provider's reasoning: nothing to add to it
            if event.text:
                out.append(self._delta(index, {"type": "thinking_delta", "thinking": event.text}))
            if event.signature and index not in self._foreign:
                out.append(self._delta(index, {"type": "signature_delta", "signature": event.signature}))
            return out
        if isinstance(event, BlockStart):
            # Only Anthropic's own signatures are shown: a client echoes them back as Anthropic's.
            own = event.provider in (None, PROVIDER)
            redacted = event.redacted if own else None
            if event.kind == "reasoning" and event.redacted is not None and not own:
                return []  # another provider's redacted block has no Anthropic form
            out = self._open_block(event.index, event.kind, event.id, event.name, redacted)
            if redacted is not None:
                self._sealed.add(self._blocks[event.index])
            elif event.kind == "reasoning" and not own:
                self._foreign.add(self._blocks[event.index])
            return out
        if isinstance(event, BlockStop):
            open_here = self._open is not None and self._blocks.get(event.index) == self._open
            return self._close() if open_here else []
        if isinstance(event, MessageStart):
            return self._start(event.input_tokens)
        if isinstance(event, UsageEvent):
            self._usage = event.usage
            return []
        if isinstance(event, MessageStop):
            out = self._start() + self._close()
            self._done = True
            stop_reason = _stop_reason_out(event.finish_reason, self._saw_tool)
            delta = {"stop_reason": stop_reason,
                     "stop_sequence": event.stop_sequence if stop_reason == "stop_sequence" else None}
            out.append(_event("message_delta", {"delta": delta, "usage": _usage_out(self._usage)}))
            return [*out, _event("message_stop", {})]
        if isinstance(event, StreamError):
            self._done = True
            err = GatewayError.from_info(event.error)
            return [("error", orjson.dumps(_error_body(err)))]
        if isinstance(event, Complete):  # a non-streamed answer relayed to a stream: replay it
            return self._replay(event.response)
        return []

    def _replay(self, response: ChatResponse) -> _Out:
        out = self.render(MessageStart(id=response.id, model=response.model,
                                       input_tokens=response.usage.input_tokens))
        out += self._close()
        self._blocks = {}  # the replay numbers its own blocks from 0
        for i, part in enumerate(response.content):
            if isinstance(part, Text):
                out += self.render(BlockStart(i, "text")) + self.render(TextDelta(i, part.text))
            elif isinstance(part, ToolCall):
                out += self.render(BlockStart(i, "tool_call", part.id, part.name))
                args = orjson.dumps(_input_object(part.arguments)).decode()  # as render_response does
                out += self.render(ToolArgsDelta(i, args))
            elif isinstance(part, Reasoning) and part.redacted is not None:
                out += self._close()
                index = self._blocks[i] = len(self._kinds)
                self._kinds[index] = "redacted"
                block = {"type": "redacted_thinking", "data": part.redacted}
                out += [_event("content_block_start", {"index": index, "content_block": block}),
                        _event("content_block_stop", {"index": index})]
                continue
            elif isinstance(part, Reasoning):
                out += self.render(BlockStart(i, "reasoning"))
                out += self.render(ReasoningDelta(i, part.text, _signature_out(part) or None))
            else:
                continue
            out += self.render(BlockStop(i))
        out += self.render(UsageEvent(response.usage))
        return out + self.render(MessageStop(response.finish_reason, response.stop_sequence))


_ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 402: "billing_error",
                403: "permission_error", 404: "not_found_error", 413: "request_too_large",
                429: "rate_limit_error", 500: "api_error", 502: "api_error", 503: "overloaded_error",
                504: "timeout_error", 529: "overloaded_error"}
_STATUS_OUT = {503: 529}  # Anthropic says "overloaded" with 529; its SDK has OverloadedError for it


def _error_type(status: int) -> str:
    return _ERROR_TYPES.get(status) or ("invalid_request_error" if status < 500 else "api_error")


def _error_body(err: GatewayError) -> dict[str, Any]:
    return {"type": "error", "error": {"type": _error_type(err.status), "message": err.message}}


def render_error(err: GatewayError) -> tuple[int, bytes, dict[str, str]]:
    headers: dict[str, str] = {}
    if err.retry_after is not None:
        headers["retry-after"] = str(max(1, math.ceil(err.retry_after)))
    return _STATUS_OUT.get(err.status, err.status), orjson.dumps(_error_body(err)), headers


_IMAGE_TOKENS = 1600  # Anthropic's ceiling for one image (about 1.15 megapixels / 750)


def count_tokens(req: ChatRequest) -> int:
    """A rough input-token estimate: characters / 4 over all text, plus a flat cost per image."""
    return estimate_input_tokens(req, image_tokens=_IMAGE_TOKENS, framing_chars=0)


# --- upstream side ---------------------------------------------------------------------------


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
        header, _, data = image.url.partition(",")
        media_type = header[5:].split(";", 1)[0]
    if media_type not in IMAGE_MEDIA_TYPES:
        raise GatewayError("unsupported", f"image type '{media_type}' cannot be sent to an {PROVIDER} "
                           "upstream (jpeg, png, gif and webp only)", param="image")
    return {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}


def _part_out(part: Part) -> dict[str, Any] | None:
    if isinstance(part, Text):
        return {"type": "text", "text": part.text} if part.text else None  # empty text is refused
    if isinstance(part, Image):
        return _image_out(part)
    if isinstance(part, ToolCall):
        return {"type": "tool_use", "id": part.id, "name": part.name, "input": _input_object(part.arguments)}
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


_FINISH_IN: dict[str, FinishReason] = {
    "end_turn": "end_turn", "stop_sequence": "stop_sequence", "max_tokens": "max_tokens",
    "tool_use": "tool_use", "refusal": "content_filter", "pause_turn": "end_turn",
    "model_context_window_exceeded": "max_tokens"}


def _finish_in(stop_reason: str | None, saw_tool: bool) -> FinishReason:
    finish = _FINISH_IN.get(stop_reason or "end_turn", "end_turn")
    return "tool_use" if saw_tool and finish == "end_turn" else finish


def _usage_in(raw: dict[str, Any] | None) -> Usage:
    raw = raw or {}
    read = raw.get("cache_read_input_tokens") or 0
    written = raw.get("cache_creation_input_tokens") or 0
    return Usage(input_tokens=(raw.get("input_tokens") or 0) + written + read,
                 output_tokens=raw.get("output_tokens") or 0, cached_input_tokens=read)


def _content_in(block: dict[str, Any]) -> Part | None:
    kind = block.get("type")
    if kind == "text":
        return Text(block.get("text") or "")
    if kind == "tool_use":
        return ToolCall(id=block.get("id") or "", name=block.get("name") or "",
                        arguments=orjson.dumps(block.get("input") or {}).decode())
    if kind == "thinking":
        return Reasoning(text=block.get("thinking") or "", signature=block.get("signature") or None,
                         provider=PROVIDER)
    if kind == "redacted_thinking":
        return Reasoning(redacted=block.get("data") or "", provider=PROVIDER)
    return None  # server tool blocks, etc.


def parse_response(body: bytes) -> ChatResponse:
    data = orjson.loads(body)
    parts = [p for p in map(_content_in, data.get("content") or []) if p is not None]
    finish = _finish_in(data.get("stop_reason"), any(isinstance(p, ToolCall) for p in parts))
    return ChatResponse(id=data.get("id") or "", model=data.get("model") or "", content=parts,
                        finish_reason=finish, usage=_usage_in(data.get("usage")),
                        stop_sequence=data.get("stop_sequence") if finish == "stop_sequence" else None)


_ERROR_STATUS = {v: k for k, v in _ERROR_TYPES.items() if k not in (502, 503)}


def _error_in(status: int, err: Any, headers: dict[str, str] | None = None) -> GatewayError:
    message = str(err.get("message") or err) if isinstance(err, dict) else str(err)
    return upstream_error(status, message, retry_after_from_headers(headers or {}))


class StreamParser:
    """Anthropic SSE frames -> internal events. One instance per upstream stream."""

    def __init__(self) -> None:
        self._blocks: dict[int, int] = {}  # upstream index -> internal index (skipped blocks absent)
        self._kinds: dict[int, str] = {}  # internal index -> kind
        self._has_args: set[int] = set()
        self._open: set[int] = set()
        self._usage_raw: dict[str, Any] = {}
        self._stop_reason: str | None = None
        self._stop_sequence: str | None = None
        self._saw_tool = False
        self.done = False

    def feed(self, frame: SseFrame) -> list[StreamEvent]:
        if self.done:
            return []
        data = orjson.loads(frame.data)
        kind = frame.event or (data.get("type") if isinstance(data, dict) else None)
        if kind == "message_start":
            message = data.get("message") or {}
            self._usage_raw.update(message.get("usage") or {})
            return [MessageStart(id=message.get("id") or "", model=message.get("model") or "",
                                 input_tokens=_usage_in(self._usage_raw).input_tokens)]
        if kind == "content_block_start":
            return self._block_start(data.get("index", 0), data.get("content_block") or {})
        if kind == "content_block_delta":
            return self._delta(data.get("index", 0), data.get("delta") or {})
        if kind == "content_block_stop":
            index = self._blocks.get(data.get("index", 0))
            return self._stop(index) if index is not None and index in self._open else []
        if kind == "message_delta":
            delta = data.get("delta") or {}
            self._stop_reason = delta.get("stop_reason") or self._stop_reason
            self._stop_sequence = delta.get("stop_sequence")
            # Cumulative totals: they replace, never add; absent counts keep message_start's value.
            self._usage_raw.update({k: v for k, v in (data.get("usage") or {}).items() if v is not None})
            return []
        if kind == "message_stop":
            self.done = True
            out: list[StreamEvent] = []
            for index in sorted(self._open):
                out += self._stop(index)
            finish = _finish_in(self._stop_reason, self._saw_tool)
            stop_sequence = self._stop_sequence if finish == "stop_sequence" else None
            return [*out, UsageEvent(_usage_in(self._usage_raw)), MessageStop(finish, stop_sequence)]
        if kind == "error":
            self.done = True
            err = data.get("error") if isinstance(data, dict) else None
            etype = err.get("type") if isinstance(err, dict) else None
            return [StreamError(_error_in(_ERROR_STATUS.get(etype or "", 500), err).info())]
        return []  # ping and unknown events

    def _block_start(self, upstream: int, block: dict[str, Any]) -> list[StreamEvent]:
        btype = block.get("type")
        kinds: dict[str, Literal["text", "tool_call", "reasoning"]] = {
            "text": "text", "tool_use": "tool_call", "thinking": "reasoning"}
        kind = "reasoning" if btype == "redacted_thinking" else kinds.get(btype or "")
        if kind is None:
            return []  # server-tool blocks have no stream event to map to
        index = self._blocks[upstream] = len(self._kinds)
        self._kinds[index] = kind
        self._open.add(index)
        if btype == "redacted_thinking":
            return [BlockStart(index, kind, provider=PROVIDER, redacted=block.get("data") or "")]
        start = BlockStart(index, kind, block.get("id"), block.get("name"),
                           provider=PROVIDER if kind == "reasoning" else None)
        out: list[StreamEvent] = [start]
        if kind == "tool_call":
            self._saw_tool = True
            if block.get("input"):  # only a non-empty start input counts; the usual {} is not prepended
                self._has_args.add(index)
                out.append(ToolArgsDelta(index, orjson.dumps(block["input"]).decode()))
        elif kind == "text" and block.get("text"):
            out.append(TextDelta(index, block["text"]))
        elif kind == "reasoning" and (block.get("thinking") or block.get("signature")):
            out.append(ReasoningDelta(index, block.get("thinking") or "", block.get("signature") or None))
        return out

    def _delta(self, upstream: int, delta: dict[str, Any]) -> list[StreamEvent]:
        index = self._blocks.get(upstream)
        if index is None:
            return []
        dtype = delta.get("type")
        if dtype == "text_delta" and delta.get("text"):
            return [TextDelta(index, delta["text"])]
        if dtype == "input_json_delta" and delta.get("partial_json"):
            self._has_args.add(index)
            return [ToolArgsDelta(index, delta["partial_json"])]
        if dtype == "thinking_delta" and delta.get("thinking"):
            return [ReasoningDelta(index, delta["thinking"])]
        if dtype == "signature_delta" and delta.get("signature"):
            return [ReasoningDelta(index, signature=delta["signature"])]
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
    message: Any = body[:500].decode(errors="replace")
    try:
        data = orjson.loads(body)
        if isinstance(data, dict) and isinstance(data.get("error"), dict):
            message = data["error"]
    except orjson.JSONDecodeError:
        pass
    return _error_in(status, message, headers)
