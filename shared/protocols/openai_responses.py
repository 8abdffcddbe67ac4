"""OpenAI Responses API, client side only (`POST /v1/responses`).

A client's Responses body -> ChatRequest; ChatResponse and stream events -> a Response object
and the typed `event:`+`data:` SSE stream (`response.created` ... `response.completed`). Upstreams
stay Chat/Anthropic/Gemini, so there is no upstream side here.

Sluice is stateless: `previous_response_id`, `conversation`, `background`, `prompt` and
`item_reference` inputs get a 400 naming the field; `store` is accepted and ignored (a Response
says `"store": false`). Clients send the whole history in `input`, reasoning items included.
A rendered reasoning item's `encrypted_content` is a Sluice envelope ("sluice." + base64url JSON
of provider, signature, redacted data) so the blob returns to the provider that made it; any
other `encrypted_content` is taken as OpenAI's own (provider "openai").
"""

from __future__ import annotations

import base64
import binascii
import time
from dataclasses import dataclass, field
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
from shared.protocols import openai_responses_types as wt
from shared.protocols.openai_chat import render_error

__all__ = ["StreamRenderer", "parse_request", "render_error", "render_response"]

_now = time.time  # tests pin the clock for golden files

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


def parse_request(body: bytes) -> ChatRequest:
    try:
        wire = _request_decoder.decode(body)
    except msgspec.ValidationError as exc:
        raise _validation_error(exc) from None
    except msgspec.DecodeError:
        raise invalid("The request body is not valid JSON.") from None
    _refuse_stateful(wire)
    if wire.input is None:
        raise invalid("'input' is required.", "input")
    if wire.temperature is not None and not 0 <= wire.temperature <= 2:
        raise invalid("'temperature' must be between 0 and 2.", "temperature")
    if wire.top_p is not None and not 0 <= wire.top_p <= 1:
        raise invalid("'top_p' must be between 0 and 1.", "top_p")
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
    stateless = "Sluice is stateless and stores no responses; send the whole conversation in 'input'."
    if wire.previous_response_id is not None:
        raise _unsupported("previous_response_id", f"'previous_response_id' is not supported: {stateless}")
    if wire.conversation is not None:
        raise _unsupported("conversation", f"'conversation' is not supported: {stateless}")
    if wire.background:
        raise _unsupported("background", "'background' responses are not supported: Sluice stores none.")
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
                _append(messages, role, _content_in(msg.content, where, role))
        elif kind == "function_call":
            call: wt.FunctionCallItem = _convert(raw, wt.FunctionCallItem, where)
            name = namespaced(call.namespace, call.name)
            names[call.call_id] = name
            _append(messages, "assistant", [ToolCall(id=call.call_id, name=name,
                                                      arguments=call.arguments or "{}")])
        elif kind == "function_call_output":
            result: wt.FunctionCallOutputItem = _convert(raw, wt.FunctionCallOutputItem, where)
            content = _text_only(result.output, f"{where}.output")
            _append(messages, "user", [ToolResult(tool_call_id=result.call_id, content=content,
                                                  name=names.get(result.call_id))])
        elif kind == "reasoning":
            _append(messages, "assistant", [_reasoning_in(_convert(raw, wt.ReasoningItem, where), where)])
        elif kind == "item_reference":
            raise _unsupported(f"{where}.type", "'item_reference' inputs need stored responses, "
                               "which Sluice does not keep; send the item itself.")
        else:
            raise _unsupported(f"{where}.type", f"Input items of type '{kind}' are not supported.")
    return messages


def _append(messages: list[Message], role: Literal["user", "assistant"], parts: list[Part]) -> None:
    # Consecutive items of one role merge into one turn (a reasoning item, a message and its
    # function calls are one assistant turn; parallel call outputs are one user turn).
    if messages and messages[-1].role == role:
        messages[-1].content.extend(parts)
    else:
        messages.append(Message(role=role, content=parts))


def _content_in(content: str | list[wt.ContentPart], where: str, role: str) -> list[Part]:
    if isinstance(content, str):
        return [Text(content)]
    parts: list[Part] = []
    for j, p in enumerate(content):
        if isinstance(p, wt.InputImage) and role == "user":
            parts.append(_image_in(p, f"{where}.content[{j}]"))
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
    url = p.image_url
    if url.startswith("data:"):
        header, _, data = url.partition(",")
        return Image(data=data, media_type=header[5:].split(";", 1)[0] or "application/octet-stream")
    return Image(url=url)


_ENVELOPE = "sluice."


def _reasoning_in(item: wt.ReasoningItem, where: str) -> Reasoning:
    text = ("".join(c.text for c in item.content) if item.content
            else "\n\n".join(s.text for s in item.summary))
    blob = item.encrypted_content
    if not blob:
        return Reasoning(text=text)
    if not blob.startswith(_ENVELOPE):
        return Reasoning(text=text, signature=blob, provider="openai")
    try:
        payload = blob[len(_ENVELOPE):]
        raw = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
        env = msgspec.json.decode(raw, type=dict[str, str | None])
    except (binascii.Error, ValueError, msgspec.DecodeError):
        raise invalid("'encrypted_content' was altered; send it back exactly as received.",
                      f"{where}.encrypted_content") from None
    return Reasoning(text=text, signature=env.get("s"), redacted=env.get("r"), provider=env.get("p"))


def _reasoning_blob(signature: str | None, redacted: str | None, provider: str | None) -> str | None:
    if signature is None and redacted is None:
        return None
    if provider == "openai" and redacted is None:
        return signature  # OpenAI's own blob goes back untouched
    env = orjson.dumps({"p": provider, "s": signature, "r": redacted})
    return _ENVELOPE + base64.urlsafe_b64encode(env).decode().rstrip("=")


def namespaced(namespace: str | None, name: str) -> str:
    """One flat function name for a tool inside a `namespace` tool: `<namespace>__<name>`."""
    if not namespace:
        return name
    return namespace + name if namespace.endswith("_") else f"{namespace}__{name}"


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
    # to the namespace's (the model's calls come back under the joined name).
    out = [_tool_in(inner, i, f"tools[{i}].tools[{j}]") for j, inner in enumerate(group.tools)]
    return [msgspec.structs.replace(t, name=namespaced(group.name, t.name), namespace=group.name) for t in out]


def _call_name(name: str, tools: list[Tool]) -> tuple[str, str | None]:
    """(name, namespace) of a call as the client offered the tool: a joined name is split again."""
    for tool in tools:
        if tool.namespace and tool.name == name:
            return name[len(namespaced(tool.namespace, "")):], tool.namespace
    return name, None


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


# --- client side: render ---------------------------------------------------------------------

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


@dataclass(slots=True)
class _Item:
    """One output item being built: a message (one text block), a function call or reasoning."""

    index: int  # output_index
    kind: Literal["text", "tool_call", "reasoning"]
    id: str
    call_id: str = ""
    name: str = ""
    namespace: str | None = None
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


def _base_response(model: str, request_id: str, request: ChatRequest | None) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": f"resp_{request_id}", "object": "response", "created_at": int(_now()),
        "status": "in_progress", "background": False, "completed_at": None, "error": None,
        "incomplete_details": None, "instructions": None, "max_output_tokens": None, "metadata": {},
        "model": model, "output": [], "parallel_tool_calls": True, "previous_response_id": None,
        "reasoning": {"effort": None, "summary": None}, "service_tier": "default", "store": False,
        "temperature": None, "text": {"format": {"type": "text"}}, "tool_choice": "auto", "tools": [],
        "top_p": None, "truncation": "disabled", "usage": None, "user": None,
    }
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


def render_response(response: ChatResponse, model: str, request_id: str, *,
                    request: ChatRequest | None = None) -> bytes:
    """A complete Response object; pass the parsed `request` to echo its settings."""
    tools = request.tools if request is not None else []
    output = [item.as_dict("completed") for item in _items_of(response.content, request_id, tools)]
    base = _base_response(model, request_id, request)
    return orjson.dumps(_final(base, output, response.usage, response.finish_reason))


class StreamRenderer:
    """Internal stream events -> Responses SSE (event name, data) pairs.

    Output indexes and item ids (`msg_/fc_/rs_<request_id>_<output_index>`) are fixed when an
    item opens and reused by every later event and by the final Response. `include_usage` is
    accepted for symmetry with openai_chat: a Response always carries usage.
    """

    def __init__(self, model: str, request_id: str, include_usage: bool, *,
                 request: ChatRequest | None = None) -> None:
        self._base = _base_response(model, request_id, request)
        self._request_id = request_id
        self._tools = request.tools if request is not None else []
        self._seq = 0
        self._items: dict[int, _Item] = {}  # block index -> item
        self._output: dict[int, dict[str, Any]] = {}  # output_index -> finished item
        self._usage = Usage()
        self._started = False
        self._done = False

    def _emit(self, out: list[tuple[str | None, bytes]], kind: str, **fields: Any) -> None:
        out.append((kind, orjson.dumps({"type": kind, "sequence_number": self._seq, **fields})))
        self._seq += 1

    def render(self, event: StreamEvent) -> list[tuple[str | None, bytes]]:
        if self._done:
            return []
        if isinstance(event, Complete):  # a non-streamed answer relayed to a stream: replay it
            return self._replay(event.response)
        out: list[tuple[str | None, bytes]] = []
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
            item = self._open(event.index, event.kind, out, event.id, event.name)
            item.provider, item.redacted = event.provider, event.redacted  # into the encrypted_content envelope
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
              out: list[tuple[str | None, bytes]], call_id: str | None = None,
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

    def _reasoning(self, event: ReasoningDelta, out: list[tuple[str | None, bytes]]) -> None:
        item = self._open(event.index, "reasoning", out)
        if event.signature:
            item.signature = (item.signature or "") + event.signature
        if not event.text:
            return
        if not item.summary_open:
            item.summary_open = True
            self._emit(out, "response.reasoning_summary_part.added", item_id=item.id,
                       output_index=item.index, summary_index=0, part={"type": "summary_text", "text": ""})
        item.chunks.append(event.text)
        self._emit(out, "response.reasoning_summary_text.delta", item_id=item.id,
                   output_index=item.index, summary_index=0, delta=event.text)

    def _close(self, item: _Item, out: list[tuple[str | None, bytes]]) -> None:
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

    def _replay(self, response: ChatResponse) -> list[tuple[str | None, bytes]]:
        out = self.render(MessageStart(id=response.id, model=response.model))
        for i, part in enumerate(response.content):
            if isinstance(part, Text):
                out += self.render(BlockStart(i, "text"))
                out += self.render(TextDelta(i, part.text))
            elif isinstance(part, ToolCall):
                out += self.render(BlockStart(i, "tool_call", part.id, part.name))
                out += self.render(ToolArgsDelta(i, part.arguments))
            elif isinstance(part, Reasoning):
                out += self.render(BlockStart(i, "reasoning"))
                item = self._items[i]
                item.redacted, item.provider = part.redacted, part.provider
                out += self.render(ReasoningDelta(i, part.text, part.signature))
            else:
                continue
            out += self.render(BlockStop(i))
        out += self.render(UsageEvent(response.usage))
        return out + self.render(MessageStop(response.finish_reason, response.stop_sequence))
