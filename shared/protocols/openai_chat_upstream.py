"""OpenAI Chat Completions, upstream side: ChatRequest -> an OpenAI-style body for openai and
openai-compatible servers (vLLM, Ollama, llama.cpp, LM Studio, DeepSeek, the mock); their JSON
answers and SSE chunks -> ChatResponse and stream events. Implements `UpstreamDialect`.

Answers decode into typed structs; servers differ in what they leave out or send as null, so
every field is optional. Tool-call arguments stay JSON text, as the model wrote them.
"""

from __future__ import annotations

from typing import Any

import msgspec

from shared.errors import GatewayError
from shared.model import (
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
    ToolResult,
    Usage,
    UsageEvent,
)
from shared.protocols.common import PDF, OpenBlock, decode_answer, document_text
from shared.protocols.errors_http import retry_after_from_headers, upstream_error
from shared.protocols.openai_chat import tool_call_out
from shared.protocols.sse import SseFrame

# --- request ---------------------------------------------------------------------------------


def build_request(req: ChatRequest, upstream_model: str, default_max_tokens: int = 4096) -> dict[str, Any]:
    """An OpenAI-style body; `default_max_tokens` is unused (these servers need no limit). OpenAI's
    own spelling, `max_completion_tokens`, is its provider adapter's business."""
    messages: list[dict[str, Any]] = []
    if req.system:
        messages.append({"role": "system", "content": "\n\n".join(t.text for t in req.system)})
    for m in req.messages:
        messages.extend(_message_out(m))
    body: dict[str, Any] = {"model": upstream_model, "messages": messages}
    if req.stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}  # we always need usage to reconcile
    if req.max_tokens is not None:
        body["max_tokens"] = req.max_tokens
    for name in ("temperature", "top_p", "seed", "user", "reasoning_effort", "parallel_tool_calls"):
        value = getattr(req, name)
        if value is not None:
            body[name] = value
    if req.n != 1:
        body["n"] = req.n
    if req.stop:
        body["stop"] = req.stop
    if req.tools:
        body["tools"] = [_tool_out(t) for t in req.tools]
    if req.tool_choice is not None:
        tc = req.tool_choice
        body["tool_choice"] = (
            {"type": "function", "function": {"name": tc.name}} if tc.mode == "tool" else tc.mode
        )
    if req.response_format is not None:
        rf = req.response_format
        body["response_format"] = (
            {"type": "json_schema", "json_schema": {k: v for k, v in
             {"name": rf.name or "response", "schema": rf.schema, "strict": rf.strict}.items() if v is not None}}
            if rf.type == "json_schema" else {"type": rf.type}
        )
    return body


def _tool_out(tool: Tool) -> dict[str, Any]:
    fn: dict[str, Any] = {"name": tool.name, "parameters": tool.parameters}
    if tool.description is not None:
        fn["description"] = tool.description
    if tool.strict is not None:
        fn["strict"] = tool.strict
    return {"type": "function", "function": fn}


def _document_out(doc: Document) -> dict[str, Any]:
    """Plain text goes as text; a PDF as a `file` part (OpenAI's own; compatible servers that
    lack it answer with their own 400). Chat has no file URLs: those are refused."""
    if doc.text is not None:
        return {"type": "text", "text": document_text(doc)}
    if doc.data is None:
        raise GatewayError("unsupported", "A document by URL cannot be sent to an OpenAI Chat upstream; "
                           "send it inline (base64).", param="document")
    return {"type": "file", "file": {"file_data": f"data:{doc.media_type or PDF};base64,{doc.data}",
                                     "filename": doc.title or "document.pdf"}}


def _message_out(m: Message) -> list[dict[str, Any]]:
    if m.role == "assistant":
        text = "".join(p.text for p in m.content if isinstance(p, Text))
        calls = [tool_call_out(p) for p in m.content if isinstance(p, ToolCall)]
        out: dict[str, Any] = {"role": "assistant", "content": text or None}
        if calls:
            out["tool_calls"] = calls
        return [out]
    result: list[dict[str, Any]] = []
    user_parts: list[dict[str, Any]] = []
    for p in m.content:
        if isinstance(p, ToolResult):
            result.append({"role": "tool", "tool_call_id": p.tool_call_id, "content": p.content})
        elif isinstance(p, Text):
            user_parts.append({"type": "text", "text": p.text})
        elif isinstance(p, Image):
            url = p.url or f"data:{p.media_type};base64,{p.data}"
            user_parts.append({"type": "image_url", "image_url": {"url": url}})
        elif isinstance(p, Document):
            user_parts.append(_document_out(p))
    if user_parts:
        only_text = all(x["type"] == "text" for x in user_parts)
        content: Any = "".join(x["text"] for x in user_parts) if only_text else user_parts
        result.append({"role": "user", "content": content})
    return result



# --- answers: wire structs -------------------------------------------------------------------


class _Function(msgspec.Struct):
    name: str | None = None
    arguments: str | None = None


class _Call(msgspec.Struct):
    id: str | None = None
    function: _Function | None = None
    index: int | None = None  # stream deltas: which call a fragment belongs to


class _Message(msgspec.Struct):
    """A whole answer's `message`, or a stream chunk's `delta`."""

    content: str | None = None
    refusal: str | None = None  # structured outputs: the model's words instead of the schema's
    reasoning_content: str | None = None  # DeepSeek, vLLM
    reasoning: str | None = None  # Ollama, some vLLM builds
    tool_calls: list[_Call] | None = None

    @property
    def reasoning_text(self) -> str | None:
        return self.reasoning_content or self.reasoning


class _Choice(msgspec.Struct):
    message: _Message | None = None
    delta: _Message | None = None
    finish_reason: str | None = None


class _PromptDetails(msgspec.Struct):
    cached_tokens: int | None = None


class _CompletionDetails(msgspec.Struct):
    reasoning_tokens: int | None = None


class _Usage(msgspec.Struct):
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    prompt_tokens_details: _PromptDetails | None = None
    completion_tokens_details: _CompletionDetails | None = None
    prompt_cache_hit_tokens: int | None = None  # DeepSeek

    def usage(self) -> Usage:
        cached = (self.prompt_tokens_details.cached_tokens if self.prompt_tokens_details else None)
        reasoning = self.completion_tokens_details.reasoning_tokens if self.completion_tokens_details else None
        return Usage(input_tokens=self.prompt_tokens or 0, output_tokens=self.completion_tokens or 0,
                     cached_input_tokens=cached or self.prompt_cache_hit_tokens or 0,
                     reasoning_tokens=reasoning or 0)


class _ErrorObject(msgspec.Struct):
    message: Any = None  # servers put a string here, a few an object


class _Answer(msgspec.Struct):
    """`chat.completion` and `chat.completion.chunk` alike; an error chunk has only `error`."""

    id: str | None = None
    model: str | None = None
    choices: list[_Choice] | None = None
    usage: _Usage | None = None
    error: _ErrorObject | str | None = None

    def error_message(self) -> str:
        err = self.error
        if isinstance(err, str):
            return err
        return str(err.message) if err is not None and err.message is not None else "the upstream sent an error"


class _ErrorBody(msgspec.Struct):
    error: _ErrorObject | str | None = None
    detail: Any = None  # FastAPI-style servers (vLLM)


_answer_decoder = msgspec.json.Decoder(_Answer)
_error_decoder = msgspec.json.Decoder(_ErrorBody)

_FINISH_IN: dict[str, FinishReason] = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "content_filter",
}


# --- answers: parse --------------------------------------------------------------------------


def parse_response(body: bytes) -> ChatResponse:
    data = decode_answer(_answer_decoder, body)
    choice = data.choices[0] if data.choices else _Choice()
    message = choice.message or _Message()
    parts: list[Part] = []
    reasoning = message.reasoning_text
    if reasoning:
        parts.append(Reasoning(text=reasoning))
    if message.content:
        parts.append(Text(message.content))
    if message.refusal:  # carried as what the model said; no other protocol has a refusal part
        parts.append(Text(message.refusal))
    for call in message.tool_calls or []:
        fn = call.function or _Function()
        parts.append(ToolCall(id=call.id or "", name=fn.name or "", arguments=fn.arguments or "{}"))
    finish = _FINISH_IN.get(choice.finish_reason or "stop", "end_turn")
    if any(isinstance(p, ToolCall) for p in parts):
        finish = "tool_use"  # derived from content: some servers report "stop" with tool calls
    return ChatResponse(
        id=data.id or "", model=data.model or "", content=parts,
        finish_reason=finish, usage=data.usage.usage() if data.usage else Usage(),
    )


def stream_parser() -> StreamParser:
    return StreamParser()


class StreamParser:
    """OpenAI-style SSE frames -> internal events. One instance per upstream stream."""

    def __init__(self) -> None:
        self._started = False
        self._block = OpenBlock()
        self._tool_blocks: dict[int, int] = {}  # OpenAI tool index -> block index
        self._finish: FinishReason | None = None
        self._usage: Usage | None = None
        self._saw_tool = False
        self.done = False

    def feed(self, frame: SseFrame) -> list[StreamEvent]:
        if frame.data == b"[DONE]":
            return self.finish()
        try:
            data = decode_answer(_answer_decoder, frame.data)
        except GatewayError as err:
            self.done = True
            return [StreamError(err.info())]
        out: list[StreamEvent] = []
        if data.error is not None and not data.choices:
            self.done = True
            return [StreamError(GatewayError("upstream_unavailable", data.error_message()).info())]
        if not self._started:
            self._started = True
            out.append(MessageStart(id=data.id or "", model=data.model or ""))
        if data.usage is not None:
            self._usage = data.usage.usage()
        for choice in data.choices or []:
            delta = choice.delta
            if delta is not None:
                reasoning = delta.reasoning_text
                if reasoning:
                    out.append(ReasoningDelta(self._block.of("reasoning", out), reasoning))
                if delta.content:
                    out.append(TextDelta(self._block.of("text", out), delta.content))
                if delta.refusal:
                    out.append(TextDelta(self._block.of("text", out), delta.refusal))
                for call in delta.tool_calls or []:
                    self._tool_fragment(call, out)
            if choice.finish_reason:
                self._finish = _FINISH_IN.get(choice.finish_reason, "end_turn")
        return out

    def _tool_fragment(self, call: _Call, out: list[StreamEvent]) -> None:
        self._saw_tool = True
        fn = call.function or _Function()
        tool_index = call.index or 0
        block = self._tool_blocks.get(tool_index)
        if block is None:
            block = self._block.start("tool_call", out, call.id or f"call_{tool_index}", fn.name or "")
            self._tool_blocks[tool_index] = block
        if fn.arguments:
            out.append(ToolArgsDelta(block, fn.arguments))

    def finish(self) -> list[StreamEvent]:
        if self.done:
            return []
        self.done = True
        out: list[StreamEvent] = []
        if self._finish is None:
            return [StreamError(GatewayError("upstream_unavailable", "the upstream stream ended early").info())]
        self._block.close(out)
        if self._usage is not None:
            out.append(UsageEvent(self._usage))
        out.append(MessageStop("tool_use" if self._saw_tool else self._finish))
        return out


def parse_error(status: int, body: bytes, headers: dict[str, str]) -> GatewayError:
    message = body[:500].decode(errors="replace")
    try:
        data = _error_decoder.decode(body)
    except msgspec.DecodeError:  # not JSON, or not an object: the raw text is the message
        pass
    else:
        if isinstance(data.error, _ErrorObject):
            message = str(data.error.message or message)
        elif data.detail is not None:
            message = str(data.detail)
    return upstream_error(status, message, retry_after_from_headers(headers))
