"""OpenAI Responses API, rendering: ChatResponse and stream events -> a Response object and the
typed `event:`+`data:` SSE stream (`response.created` ... `response.completed`).

A rendered reasoning item's `encrypted_content` is a Sluice envelope ("sluice." + base64url JSON
of provider, signature, redacted data) so the blob returns to the provider that made it;
`openai_responses.py` opens it again when a client sends the item back.
"""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson

from shared.errors import GatewayError
from shared.model import (
    BlockStart,
    BlockStop,
    ChatRequest,
    ChatResponse,
    Complete,
    FinishReason,
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
    Usage,
    UsageEvent,
)
from shared.protocols import openai_responses_types as wt
from shared.protocols.common import replay
from shared.protocols.contracts import Rendered

_now = time.time  # tests pin the clock for golden files


def _reasoning_blob(signature: str | None, redacted: str | None, provider: str | None) -> str | None:
    if signature is None and redacted is None:
        return None
    if provider == "openai" and redacted is None:
        return signature  # OpenAI's own blob goes back untouched
    env = orjson.dumps({"p": provider, "s": signature, "r": redacted})
    return wt.ENVELOPE + base64.urlsafe_b64encode(env).decode().rstrip("=")



# internal finish reason -> (Response status, incomplete_details.reason)
_STATUS_OUT: dict[str, tuple[str, str | None]] = {
    "end_turn": ("completed", None),
    "stop_sequence": ("completed", None),
    "tool_use": ("completed", None),
    "max_tokens": ("incomplete", "max_output_tokens"),
    "content_filter": ("incomplete", "content_filter"),
    "error": ("failed", None),
}

_PREFIX = {"text": "msg", "tool_call": "fc", "reasoning": "rs"}


def _usage_out(usage: Usage) -> dict[str, Any]:
    return {
        "input_tokens": usage.input_tokens,
        "input_tokens_details": {"cached_tokens": usage.cached_input_tokens, "cache_write_tokens": 0},
        "output_tokens": usage.output_tokens,
        "output_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
        "total_tokens": usage.input_tokens + usage.output_tokens,
    }


def _text_part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def namespaced(namespace: str | None, name: str) -> str:
    """One flat function name for a tool inside a `namespace` tool: `<namespace>__<name>`."""
    if not namespace:
        return name
    return namespace + name if namespace.endswith("_") else f"{namespace}__{name}"


def _call_name(name: str, tools: list[Tool]) -> tuple[str, str | None]:
    """(name, namespace) of a call as the client offered the tool: a joined name is split again."""
    for tool in tools:
        if tool.namespace and tool.name == name:
            return name[len(namespaced(tool.namespace, "")):], tool.namespace
    return name, None


@dataclass(slots=True)
class _Item:
    """One output item being built: a message (one text block), a function call or reasoning."""

    index: int  # output_index
    kind: Literal["text", "tool_call", "reasoning"]
    id: str
    call_id: str = ""
    name: str = ""
    namespace: str | None = None  # Codex routes a call to a `namespace` tool by this split
    chunks: list[str] = field(default_factory=list)
    signature: str | None = None
    redacted: str | None = None
    provider: str | None = None
    summary_open: bool = False
    closed: bool = False

    @property
    def text(self) -> str:
        return "".join(self.chunks)

    def as_dict(self, status: str) -> dict[str, Any]:
        done = status != "in_progress"
        if self.kind == "text":
            return {"type": "message", "id": self.id, "status": status, "role": "assistant",
                    "content": [_text_part(self.text)] if done else []}
        if self.kind == "tool_call":
            call = {"type": "function_call", "id": self.id, "call_id": self.call_id, "name": self.name,
                    "arguments": (self.text or "{}") if done else "", "status": status}
            if self.namespace:
                call["namespace"] = self.namespace
            return call
        text = self.text if done else ""
        item = {"type": "reasoning", "id": self.id, "status": status,
                "summary": [{"type": "summary_text", "text": text}] if text else []}
        blob = _reasoning_blob(self.signature, self.redacted, self.provider) if done else None
        if blob is not None:
            item["encrypted_content"] = blob
        return item


@dataclass(frozen=True, slots=True)
class Storage:
    """What a Response says about server state: stored or not, and the response it continues."""

    store: bool = False
    previous_response_id: str | None = None
    created_at: int | None = None  # a stored Response keeps the time it was made


def _base_response(model: str, request_id: str, request: ChatRequest | None,
                   storage: Storage | None = None) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": f"resp_{request_id}", "object": "response", "created_at": int(_now()),
        "status": "in_progress", "background": False, "completed_at": None, "error": None,
        "incomplete_details": None, "instructions": None, "max_output_tokens": None, "metadata": {},
        "model": model, "output": [], "parallel_tool_calls": True, "previous_response_id": None,
        "reasoning": {"effort": None, "summary": None}, "service_tier": "default", "store": False,
        "temperature": None, "text": {"format": {"type": "text"}}, "tool_choice": "auto", "tools": [],
        "top_p": None, "truncation": "disabled", "usage": None, "user": None,
    }
    if storage is not None:
        base.update(store=storage.store, previous_response_id=storage.previous_response_id)
        if storage.created_at is not None:
            base["created_at"] = storage.created_at
    if request is not None:  # echo the request's settings, as OpenAI does
        base.update(
            max_output_tokens=request.max_tokens, temperature=request.temperature, top_p=request.top_p,
            user=request.user, reasoning={"effort": request.reasoning_effort, "summary": None},
            tools=[{"type": "function", "name": t.name, "description": t.description,
                    "parameters": t.parameters, "strict": t.strict} for t in request.tools],
        )
        if request.parallel_tool_calls is not None:
            base["parallel_tool_calls"] = request.parallel_tool_calls
        tc = request.tool_choice
        if tc is not None:
            base["tool_choice"] = {"type": "function", "name": tc.name} if tc.mode == "tool" else tc.mode
        rf = request.response_format
        if rf is not None:
            base["text"] = {"format": {"type": "json_schema", "name": rf.name or "response", "schema":
                                       rf.schema or {}, "strict": rf.strict}
                            if rf.type == "json_schema" else {"type": rf.type}}
    return base


def _error_code(kind: str) -> str:
    # Response.error.code is a closed set in the SDK; map onto its nearest members.
    if kind == "rate_limited":
        return "rate_limit_exceeded"
    if kind in ("invalid_request", "unsupported", "upstream_rejected"):
        return "invalid_prompt"
    return "server_error"


def _final(base: dict[str, Any], output: list[dict[str, Any]], usage: Usage,
           finish: FinishReason, error: GatewayError | None = None) -> dict[str, Any]:
    status, reason = _STATUS_OUT[finish] if error is None else ("failed", None)
    response = {**base, "status": status, "output": output, "usage": _usage_out(usage),
                "incomplete_details": {"reason": reason} if reason else None}
    if status == "completed":
        response["completed_at"] = int(_now())
    elif status == "failed":
        err = error or GatewayError("upstream_unavailable", "The upstream model stopped with an error.")
        response["error"] = {"code": _error_code(err.kind), "message": err.message}
    return response


def _items_of(content: list[Part], request_id: str, tools: list[Tool]) -> list[_Item]:
    items: list[_Item] = []
    for part in content:
        index = len(items)
        if isinstance(part, Text):
            item = _Item(index, "text", f"msg_{request_id}_{index}", chunks=[part.text])
        elif isinstance(part, ToolCall):
            name, namespace = _call_name(part.name, tools)
            item = _Item(index, "tool_call", f"fc_{request_id}_{index}", call_id=part.id,
                         name=name, namespace=namespace, chunks=[part.arguments])
        elif isinstance(part, Reasoning):
            item = _Item(index, "reasoning", f"rs_{request_id}_{index}", chunks=[part.text],
                         signature=part.signature, redacted=part.redacted, provider=part.provider)
        else:
            continue  # images and tool results never appear in a model's output
        items.append(item)
    return items


def render_response(response: ChatResponse, model: str, request_id: str,
                    request: ChatRequest | None = None, *, storage: Storage | None = None) -> bytes:
    """A complete Response object; pass the parsed `request` to echo its settings."""
    tools = request.tools if request is not None else []
    output = [item.as_dict("completed") for item in _items_of(response.content, request_id, tools)]
    base = _base_response(model, request_id, request, storage)
    return orjson.dumps(_final(base, output, response.usage, response.finish_reason))


def renderer(model: str, request_id: str, include_usage: bool,
             request: ChatRequest | None = None, *, storage: Storage | None = None) -> StreamRenderer:
    return StreamRenderer(model, request_id, include_usage, request=request, storage=storage)


class StreamRenderer:
    """Internal stream events -> Responses SSE (event name, data) pairs.

    Output indexes and item ids (`msg_/fc_/rs_<request_id>_<output_index>`) are fixed when an
    item opens and reused by every later event and by the final Response. `include_usage` is
    accepted for symmetry with openai_chat: a Response always carries usage.
    """

    def __init__(self, model: str, request_id: str, include_usage: bool, *,
                 request: ChatRequest | None = None, storage: Storage | None = None) -> None:
        self._base = _base_response(model, request_id, request, storage)
        self._request_id = request_id
        self._tools = request.tools if request is not None else []
        self._seq = 0
        self._items: dict[int, _Item] = {}  # block index -> item
        self._output: dict[int, dict[str, Any]] = {}  # output_index -> finished item
        self._usage = Usage()
        self._started = False
        self._done = False

    def _emit(self, out: Rendered, kind: str, **fields: Any) -> None:
        out.append((kind, orjson.dumps({"type": kind, "sequence_number": self._seq, **fields})))
        self._seq += 1

    def render(self, event: StreamEvent) -> Rendered:
        if self._done:
            return []
        if isinstance(event, Complete):  # a non-streamed answer relayed to a stream: replay it
            return self._replay(event.response)
        out: Rendered = []
        if not self._started:  # response.created must come first, whatever arrives first
            self._started = True
            self._emit(out, "response.created", response=self._base)
            self._emit(out, "response.in_progress", response=self._base)
        if isinstance(event, TextDelta):
            item = self._open(event.index, "text", out)
            if event.text:
                item.chunks.append(event.text)
                self._emit(out, "response.output_text.delta", item_id=item.id, output_index=item.index,
                           content_index=0, delta=event.text, logprobs=[])
        elif isinstance(event, ToolArgsDelta):
            item = self._open(event.index, "tool_call", out)
            if event.json:
                item.chunks.append(event.json)
                self._emit(out, "response.function_call_arguments.delta", item_id=item.id,
                           output_index=item.index, delta=event.json)
        elif isinstance(event, ReasoningDelta):
            self._reasoning(event, out)
        elif isinstance(event, BlockStart):
            self._open(event.index, event.kind, out, event.id, event.name)
        elif isinstance(event, BlockStop):
            open_item = self._items.get(event.index)
            if open_item is not None and not open_item.closed:
                self._close(open_item, out)
        elif isinstance(event, UsageEvent):
            self._usage = event.usage
        elif isinstance(event, MessageStop):
            self._done = True
            for item in self._items.values():
                if not item.closed:
                    self._close(item, out)
            final = _final(self._base, self._finished(), self._usage, event.finish_reason)
            kind = {"completed": "response.completed", "incomplete": "response.incomplete"}.get(
                final["status"], "response.failed")
            self._emit(out, kind, response=final)
        elif isinstance(event, StreamError):
            self._done = True
            err = GatewayError.from_info(event.error)
            self._emit(out, "error", code=_error_code(err.kind), message=err.message, param=err.param)
            final = _final(self._base, self._finished(), self._usage, "error", err)
            self._emit(out, "response.failed", response=final)
        return out

    def _finished(self) -> list[dict[str, Any]]:
        output = dict(self._output)
        for item in self._items.values():  # items cut off by an error
            output.setdefault(item.index, item.as_dict("incomplete"))
        return [output[i] for i in sorted(output)]

    def _open(self, block: int, kind: Literal["text", "tool_call", "reasoning"],
              out: Rendered, call_id: str | None = None,
              name: str | None = None) -> _Item:
        item = self._items.get(block)
        if item is not None:
            return item
        index = len(self._items)
        name, namespace = _call_name(name or "", self._tools)
        item = _Item(index, kind, f"{_PREFIX[kind]}_{self._request_id}_{index}",
                     call_id=call_id or f"call_{self._request_id}_{index}", name=name, namespace=namespace)
        self._items[block] = item
        self._emit(out, "response.output_item.added", output_index=index, item=item.as_dict("in_progress"))
        if kind == "text":
            self._emit(out, "response.content_part.added", item_id=item.id, output_index=index,
                       content_index=0, part=_text_part(""))
        return item

    def _reasoning(self, event: ReasoningDelta, out: Rendered) -> None:
        item = self._open(event.index, "reasoning", out)
        if event.signature:
            item.signature = (item.signature or "") + event.signature
        if event.redacted is not None:
            item.redacted = event.redacted
        if event.provider is not None:  # the envelope sends the blob back to its maker
            item.provider = event.provider
        if not event.text:
            return
        if not item.summary_open:
            item.summary_open = True
            self._emit(out, "response.reasoning_summary_part.added", item_id=item.id,
                       output_index=item.index, summary_index=0, part={"type": "summary_text", "text": ""})
        item.chunks.append(event.text)
        self._emit(out, "response.reasoning_summary_text.delta", item_id=item.id,
                   output_index=item.index, summary_index=0, delta=event.text)

    def _close(self, item: _Item, out: Rendered) -> None:
        item.closed = True
        ids = {"item_id": item.id, "output_index": item.index}
        done = item.as_dict("completed")
        if item.kind == "text":
            self._emit(out, "response.output_text.done", **ids, content_index=0, text=item.text, logprobs=[])
            self._emit(out, "response.content_part.done", **ids, content_index=0, part=done["content"][0])
        elif item.kind == "tool_call":
            self._emit(out, "response.function_call_arguments.done", **ids, name=item.name,
                       arguments=done["arguments"])
        elif item.summary_open:
            self._emit(out, "response.reasoning_summary_text.done", **ids, summary_index=0, text=item.text)
            self._emit(out, "response.reasoning_summary_part.done", **ids, summary_index=0,
                       part=done["summary"][0])
        self._emit(out, "response.output_item.done", output_index=item.index, item=done)
        self._output[item.index] = done

    def _replay(self, response: ChatResponse) -> Rendered:
        return replay(self.render, response)
