"""Anthropic Messages, client side: implements `ClientDialect`.

A client's `POST /v1/messages` body -> ChatRequest; ChatResponse and stream events -> Anthropic's
JSON and named-event SSE (`event: message_start` ... `event: message_stop`). The upstream side
is `anthropic_upstream.py`. Lossy points are listed in docs/compatibility.md.
"""

from __future__ import annotations

import math
from typing import Any

import orjson

from shared.errors import GatewayError, invalid
from shared.model import (
    BlockStart,
    BlockStop,
    ChatRequest,
    ChatResponse,
    Complete,
    FinishReason,
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
    Usage,
    UsageEvent,
)
from shared.protocols import anthropic_types as w
from shared.protocols.common import append_turn, arguments_object, check_range, decode_body, dumps, part_events, replay
from shared.protocols.contracts import Rendered
from shared.protocols.sse import KEEPALIVE
from shared.tokens import estimate_input_tokens

PROVIDER = w.PROVIDER
name = "anthropic_messages"
sse_ids = True
keepalive = KEEPALIVE


# --- client side: parse ----------------------------------------------------------------------


def parse_request(body: bytes, model: str | None = None, stream: bool = False) -> ChatRequest:
    """`model` and `stream` come from the body; the arguments are the contract's, unused here."""
    return _parse(body, require_max_tokens=True)


def parse_count_tokens_request(body: bytes) -> ChatRequest:
    """`POST /v1/messages/count_tokens` takes a Messages body without `max_tokens`."""
    return _parse(body, require_max_tokens=False)


def _parse(body: bytes, *, require_max_tokens: bool) -> ChatRequest:
    wire = decode_body(w.request_decoder, body)
    if not wire.messages:
        raise invalid("'messages' must contain at least one message.", "messages")
    if wire.max_tokens is None:
        if require_max_tokens:
            raise invalid("'max_tokens' is required.", "max_tokens")
    elif wire.max_tokens < 1:
        raise invalid("'max_tokens' must be at least 1.", "max_tokens")
    check_range(wire.temperature, 0, 1, "temperature")
    check_range(wire.top_p, 0, 1, "top_p")
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
        parts: list[Part] = []
        for j, b in enumerate(blocks):
            try:
                parts += b.parts()
            except GatewayError as err:  # a block names its own field; the client needs the whole path
                err.param = f"messages[{i}].content[{j}].{err.param}" if err.param else err.param
                raise
        append_turn(messages, m.role, parts)
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


def _signature_out(part: Reasoning) -> str:
    # Only Anthropic's own signatures are shown: a client echoes them back as Anthropic's.
    return (part.signature or "") if part.provider in (None, PROVIDER) else ""


def _block_out(part: Part) -> dict[str, Any] | None:
    if isinstance(part, Text):
        return {"type": "text", "text": part.text}
    if isinstance(part, ToolCall):
        return {"type": "tool_use", "id": part.id, "name": part.name, "input": arguments_object(part.arguments)}
    if isinstance(part, Reasoning):
        if part.redacted is not None:
            return {"type": "redacted_thinking", "data": part.redacted}
        return {"type": "thinking", "thinking": part.text, "signature": _signature_out(part)}
    return None


def render_response(response: ChatResponse, model: str, request_id: str,
                    request: ChatRequest | None = None) -> bytes:
    content = [b for b in map(_block_out, response.content) if b is not None]
    saw_tool = any(isinstance(p, ToolCall) for p in response.content)
    stop_reason = _stop_reason_out(response.finish_reason, saw_tool)
    return orjson.dumps({
        "id": f"msg_{request_id}", "type": "message", "role": "assistant", "model": model, "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": response.stop_sequence if stop_reason == "stop_sequence" else None,
        "usage": _usage_out(response.usage),
    })


def _event(name: str, payload: dict[str, Any]) -> tuple[str | None, bytes]:
    return name, orjson.dumps({"type": name, **payload})


def renderer(model: str, request_id: str, include_usage: bool,
             request: ChatRequest | None = None) -> StreamRenderer:
    return StreamRenderer(model, request_id, include_usage)


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
        self._saw_tool = False
        self._usage = Usage()
        # include_usage is ignored: Anthropic streams always carry usage.

    def _start(self, input_tokens: int = 0) -> Rendered:
        if self._started:
            return []
        self._started = True
        usage = _usage_out(Usage(input_tokens=input_tokens, output_tokens=1))
        message: dict[str, Any] = {"id": self._id, "type": "message", "role": "assistant",
                                   "model": self._model, "content": [], "stop_reason": None,
                                   "stop_sequence": None, "usage": usage}
        return [_event("message_start", {"message": message}), _event("ping", {})]

    def _open_block(self, internal: int, kind: str, call_id: str | None = None,
                    name: str | None = None) -> Rendered:
        out = self._start() + self._close()
        index = self._blocks[internal] = len(self._kinds)
        self._kinds[index] = kind
        self._open = index
        if kind == "tool_call":
            self._saw_tool = True
            block: dict[str, Any] = {"type": "tool_use", "id": call_id or f"toolu_{index}",
                                     "name": name or "", "input": {}}
        elif kind == "reasoning":
            block = {"type": "thinking", "thinking": "", "signature": ""}
        else:
            block = {"type": "text", "text": ""}
        return [*out, _event("content_block_start", {"index": index, "content_block": block})]

    def _close(self) -> Rendered:
        index, self._open = self._open, None
        if index is None:
            return []
        out: Rendered = []
        if self._kinds[index] == "tool_call" and index not in self._has_args:
            # No argument deltas: send "{}" so clients that concatenate partial_json get valid JSON.
            out.append(self._delta(index, {"type": "input_json_delta", "partial_json": "{}"}))
        return [*out, _event("content_block_stop", {"index": index})]

    def _delta(self, index: int, delta: dict[str, Any]) -> tuple[str | None, bytes]:
        return _event("content_block_delta", {"index": index, "delta": delta})

    def _block(self, internal: int, kind: str) -> tuple[int, Rendered]:
        """The Anthropic index for a delta, opening a block when the delta arrives without one."""
        out = self._open_block(internal, kind) if internal not in self._blocks else []
        return self._blocks[internal], out

    def render(self, event: StreamEvent) -> Rendered:
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
            if event.redacted is not None:
                return self._redacted(event.index, event.redacted)
            index, out = self._block(event.index, "reasoning")
            if event.text:
                out.append(self._delta(index, {"type": "thinking_delta", "thinking": event.text}))
            if event.signature and event.provider in (None, PROVIDER):  # as render_response shows them
                out.append(self._delta(index, {"type": "signature_delta", "signature": event.signature}))
            return out
        if isinstance(event, BlockStart):
            return self._open_block(event.index, event.kind, event.id, event.name)
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

    def _replay(self, response: ChatResponse) -> Rendered:
        out = self._close()
        self._blocks = {}  # the replay numbers its own blocks from 0
        return out + replay(self.render, response, self._replay_part)

    def _replay_part(self, i: int, part: Part) -> Rendered:
        if not isinstance(part, ToolCall):
            return [pair for event in part_events(i, part) for pair in self.render(event)]
        # The arguments as render_response shows them: an object, so cut JSON becomes {}.
        args = dumps(arguments_object(part.arguments))
        return (self.render(BlockStart(i, "tool_call", part.id, part.name)) + self.render(ToolArgsDelta(i, args))
                + self.render(BlockStop(i)))

    def _redacted(self, internal: int, data: str) -> Rendered:
        """A redacted block is whole at its start; its BlockStop closes it like any other."""
        out = self._start() + self._close()
        index = self._blocks[internal] = len(self._kinds)
        self._kinds[index] = "redacted"
        self._open = index
        block = {"type": "redacted_thinking", "data": data}
        return [*out, _event("content_block_start", {"index": index, "content_block": block})]


_STATUS_OUT = {503: 529}  # Anthropic says "overloaded" with 529; its SDK has OverloadedError for it
_KIND_STATUS = {"quota_exceeded": 402}  # Anthropic's billing_error: spent credit is not a rate limit


def _error_type(status: int) -> str:
    return w.ERROR_TYPES.get(status) or ("invalid_request_error" if status < 500 else "api_error")


def _status(err: GatewayError) -> int:
    return _KIND_STATUS.get(err.kind) or _STATUS_OUT.get(err.status, err.status)


def _error_body(err: GatewayError) -> dict[str, Any]:
    return {"type": "error", "error": {"type": _error_type(_status(err)), "message": err.message}}


def render_error(err: GatewayError) -> tuple[int, bytes, dict[str, str]]:
    headers: dict[str, str] = {}
    if err.retry_after is not None:
        headers["retry-after"] = str(max(1, math.ceil(err.retry_after)))
    return _status(err), orjson.dumps(_error_body(err)), headers


_IMAGE_TOKENS = 1600  # Anthropic's ceiling for one image (about 1.15 megapixels / 750)


def count_tokens(req: ChatRequest) -> int:
    """A rough input-token estimate: characters / 4 over all text, plus a flat cost per image."""
    return estimate_input_tokens(req, image_tokens=_IMAGE_TOKENS, framing_chars=0)
