"""Gemini generateContent, client side: implements `ClientDialect`.

A client's `POST /v1beta/models/{model}:generateContent` (or `:streamGenerateContent?alt=sse`)
body -> ChatRequest; ChatResponse and stream events -> GenerateContentResponse JSON and
`data:`-only SSE chunks (no terminator). The upstream side is `gemini_upstream.py`; the model
parts builder both sides share (`model_parts_out`) is here.

Ids: Gemini's functionCall/functionResponse `id` is optional. Client side, missing call ids
are synthesized as `call_<content index>_<n>` and a functionResponse without an id takes the
id of the first unanswered call of the same name in the preceding model turn. Upstream side,
ids are not sent (Gemini pairs by name and order); each functionResponse gets the name of
the earlier ToolCall with its id, and missing response ids become `call_<responseId>_<n>`.

Thought signatures: a functionCall's signature rides on ToolCall.signature. A signature on
any other part becomes a signature-only Reasoning placed right after that part; when the
history goes back out, such a signature is attached to the next unsigned functionCall, else
to the preceding text part, else sent as `{"text": "", "thoughtSignature": ...}`.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec
import orjson

from shared.errors import GatewayError, field_of, invalid
from shared.model import (
    BlockStart,
    BlockStop,
    ChatRequest,
    ChatResponse,
    Complete,
    Document,
    Image,
    Message,
    MessageStop,
    Part,
    Reasoning,
    ReasoningDelta,
    StreamError,
    StreamEvent,
    Text,
    TextDelta,
    ToolArgsDelta,
    ToolCall,
    ToolResult,
    Usage,
    UsageEvent,
)
from shared.protocols import gemini_types as w
from shared.protocols.common import PDF, PLAIN_TEXT, append_turn, arguments_object, document_from_data, dumps
from shared.protocols.contracts import Rendered

PROVIDER = "gemini"
name = "gemini"
# The google-genai SDK reads every non-`data:` line as raw JSON, so Gemini streams carry no
# `id:` lines (no in-band resume) and keep alive with a bare newline instead of a comment.
sse_ids = False
keepalive = b"\n"


# --- client side: parse ----------------------------------------------------------------------


def parse_request(body: bytes, model: str | None = None, stream: bool = False) -> ChatRequest:
    """`model` and `stream` come from the URL (`models/{model}:streamGenerateContent`)."""
    if model is None:
        raise invalid("The model is named in the URL: /v1beta/models/{model}:generateContent.", "model")
    try:
        raw = msgspec.json.decode(body)
    except msgspec.DecodeError:
        raise invalid("The request body is not valid JSON.") from None
    if not isinstance(raw, dict):
        raise invalid("The request body must be a JSON object.")
    raw = w.normalize_keys(raw)
    w.reject_unsupported(raw)
    try:
        wire = msgspec.convert(raw, w.WireRequest)
    except msgspec.ValidationError as exc:
        raise invalid(f"Invalid request body: {exc}", field_of(exc)) from None
    if not wire.contents:
        raise invalid("'contents' must contain at least one content.", "contents")
    gc = wire.generation_config or w.GenerationConfig()
    gc.check()
    system = wire.system_instruction
    return ChatRequest(
        model=model,
        messages=_contents_in(wire.contents),
        system=([Text(system)] if system else []) if isinstance(system, str | None) else system.texts(),
        tools=[fd.tool() for tool in wire.tools or [] for fd in tool.function_declarations],
        tool_choice=wire.tool_config.tool_choice() if wire.tool_config else None,
        response_format=gc.response_format(),
        max_tokens=gc.max_output_tokens,
        temperature=gc.temperature,
        top_p=gc.top_p,
        top_k=int(gc.top_k) if gc.top_k is not None else None,
        stop=list(gc.stop_sequences or []),
        n=gc.candidate_count if gc.candidate_count is not None else 1,
        seed=gc.seed,
        reasoning_effort=gc.thinking_config.effort() if gc.thinking_config else None,
        stream=stream,
        include_usage=True,  # Gemini streams always carry usageMetadata
    )


def _contents_in(contents: list[w.Content]) -> list[Message]:
    messages: list[Message] = []
    pending: list[tuple[str, str]] = []  # (name, id) of the latest model turn's unanswered calls
    last_role = ""
    for t, content in enumerate(contents):
        role = content.role or "user"
        if not content.parts:
            raise invalid("A content's 'parts' must not be empty.", f"contents[{t}].parts")
        if role == "model":
            parts, calls = _parts_in(content.parts, t, True, pending)
            pending = pending + calls if last_role == "model" else calls
            _append(messages, "assistant", parts)
        elif role in ("user", "function"):
            _append(messages, "user", _parts_in(content.parts, t, False, pending)[0])
        else:
            raise invalid(f"Unknown role '{role}'; expected 'user' or 'model'.", f"contents[{t}].role")
        last_role = role if role == "model" else "user"
    return messages


def _append(messages: list[Message], role: Literal["user", "assistant"], parts: list[Part]) -> None:
    if parts:  # a content whose parts all mapped to nothing adds no turn
        append_turn(messages, role, parts)


def _parts_in(parts: list[w.WirePart], t: int, model_turn: bool,
              pending: list[tuple[str, str]]) -> tuple[list[Part], list[tuple[str, str]]]:
    """One content's parts; `pending` holds the preceding model turn's unanswered (name, id) calls."""
    out: list[Part] = []
    calls: list[tuple[str, str]] = []
    for j, p in enumerate(parts):
        where = f"contents[{t}].parts[{j}]"
        if p.function_call is not None:
            if not model_turn:
                raise invalid("A functionCall must be in a 'model' turn.", where + ".functionCall")
            fc = p.function_call
            call_id = fc.id or f"call_{t}_{len(calls)}"
            out.append(ToolCall(id=call_id, name=fc.name, arguments=dumps(fc.args or {}),
                                signature=p.thought_signature))
            calls.append((fc.name, call_id))
        elif p.function_response is not None:
            if model_turn:
                raise invalid("A functionResponse must be in a 'user' turn.", where + ".functionResponse")
            fr = p.function_response
            answered = fr.id or _take(pending, fr.name)
            if answered is None:
                raise invalid(f"functionResponse '{fr.name}' answers no functionCall of that name in the "
                              "preceding model turn.", where + ".functionResponse.name")
            response = fr.response if fr.response is not None else {}
            pending[:] = [c for c in pending if c[1] != answered]
            out.append(ToolResult(tool_call_id=answered, content=dumps(response), name=fr.name))
        elif p.thought and model_turn:
            out.append(Reasoning(text=p.text or "", signature=p.thought_signature))
        elif p.executable_code is not None or p.code_execution_result is not None:
            raise GatewayError("unsupported", "Code execution parts are not supported.", param=where)
        elif p.inline_data is not None:  # the SDK sends URL-safe base64; keep the standard alphabet
            data = p.inline_data.data.replace("-", "+").replace("_", "/")
            mime = p.inline_data.mime_type
            out.append(document_from_data(mime, data, p.inline_data.display_name, where + ".inlineData")
                       if mime in (PDF, PLAIN_TEXT) else Image(data=data, media_type=mime))
        elif p.file_data is not None:
            fd = p.file_data
            out.append(Document(url=fd.file_uri, media_type=PDF, title=fd.display_name) if fd.mime_type == PDF
                       else Image(url=fd.file_uri, media_type=fd.mime_type))
        elif p.text is None and p.thought_signature is None:
            raise invalid("The part has no data.", where)
        if p.text and not (p.thought and model_turn):
            out.append(Text(p.text))
        if p.thought_signature and model_turn and not (p.thought or p.function_call):
            out.append(Reasoning(signature=p.thought_signature))
    return out, calls


def _take(pending: list[tuple[str, str]], name: str) -> str | None:
    for i, (call_name, call_id) in enumerate(pending):
        if call_name == name:
            del pending[i]
            return call_id
    return None


# --- both sides: internal parts -> Gemini parts ----------------------------------------------


def _settle(parts: list[dict[str, Any]], signature: str | None) -> None:
    """Places a signature no functionCall took: on the preceding text part, else on its own."""
    if signature is None:
        return
    last = parts[-1] if parts else None
    if last is not None and "text" in last and "thoughtSignature" not in last:
        last["thoughtSignature"] = signature
    else:
        parts.append({"text": "", "thoughtSignature": signature})


def model_parts_out(content: list[Part], *, with_ids: bool, upstream: bool) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = []
    pending: str | None = None  # a signature-only Reasoning waiting for its part
    for p in content:
        if isinstance(p, ToolCall):
            call: dict[str, Any] = {"name": p.name, "args": arguments_object(p.arguments)}
            if with_ids:
                call["id"] = p.id
            part: dict[str, Any] = {"functionCall": call}
            signature, pending = p.signature or pending, None
            if signature:
                part["thoughtSignature"] = signature
            parts.append(part)
            continue
        if isinstance(p, Reasoning) and upstream and p.provider not in (None, PROVIDER):
            continue  # another provider's reasoning cannot be replayed to Gemini
        if isinstance(p, Reasoning) and not p.text:
            if p.signature:
                _settle(parts, pending)
                pending = p.signature
            continue
        _settle(parts, pending)
        pending = None
        if isinstance(p, Reasoning):
            thought: dict[str, Any] = {"text": p.text, "thought": True}
            if p.signature:
                thought["thoughtSignature"] = p.signature
            parts.append(thought)
        elif isinstance(p, Text):
            if p.text:  # Gemini rejects empty text parts
                parts.append({"text": p.text})
        elif isinstance(p, Image):
            parts.append(w.image_part(p))
    _settle(parts, pending)
    return parts


# --- client side: render ---------------------------------------------------------------------

def _response_dict(response: ChatResponse, model: str, request_id: str) -> dict[str, Any]:
    parts = model_parts_out(response.content, with_ids=True, upstream=False)
    candidate = {"content": {"role": "model", "parts": parts},
                 "finishReason": w.FINISH_OUT[response.finish_reason], "index": 0}
    return {"candidates": [candidate], "usageMetadata": w.usage_metadata(response.usage),
            "modelVersion": model, "responseId": request_id}


def render_response(response: ChatResponse, model: str, request_id: str,
                    request: ChatRequest | None = None) -> bytes:
    return orjson.dumps(_response_dict(response, model, request_id))


def renderer(model: str, request_id: str, include_usage: bool,
             request: ChatRequest | None = None) -> StreamRenderer:
    return StreamRenderer(model, request_id, include_usage)


class StreamRenderer:
    """Internal stream events -> Gemini `data:` chunks. Text streams as it comes; a function call
    is held until its block closes and sent whole; the last chunk carries finishReason and
    usageMetadata (always: Gemini streams report usage unasked, so `include_usage` is moot)."""

    def __init__(self, model: str, request_id: str, include_usage: bool) -> None:
        self._model = model
        self._request_id = request_id
        self._usage = Usage()
        self._calls: dict[int, tuple[str | None, str | None, list[str]]] = {}  # block -> id, name, args
        self._signature: str | None = None  # from a signature-only reasoning block, for the next part
        self._thinking: set[int] = set()  # reasoning blocks that carried text

    def _chunk(self, parts: list[dict[str, Any]], finish: str | None = None) -> tuple[str | None, bytes]:
        candidate: dict[str, Any] = {"content": {"role": "model", "parts": parts}, "index": 0}
        body: dict[str, Any] = {"candidates": [candidate]}
        if finish is not None:
            candidate["finishReason"] = finish
            body["usageMetadata"] = w.usage_metadata(self._usage)
        body["modelVersion"] = self._model
        body["responseId"] = self._request_id
        return None, orjson.dumps(body)

    def _flush(self, out: Rendered) -> None:
        if self._signature is not None:
            out.append(self._chunk([{"text": "", "thoughtSignature": self._signature}]))
            self._signature = None

    def render(self, event: StreamEvent) -> Rendered:
        """Returns (SSE event name, data) pairs; Gemini uses no event names."""
        out: Rendered = []
        if isinstance(event, TextDelta):
            if event.text:
                self._flush(out)
                out.append(self._chunk([{"text": event.text}]))
        elif isinstance(event, ReasoningDelta):
            if event.text:
                self._flush(out)
                self._thinking.add(event.index)
                out.append(self._chunk([{"text": event.text, "thought": True}]))
            if event.signature:
                self._flush(out)
                if event.index in self._thinking:  # the signature of that thought, not of a call
                    signed = {"text": "", "thought": True, "thoughtSignature": event.signature}
                    out.append(self._chunk([signed]))
                else:
                    self._signature = event.signature
        elif isinstance(event, BlockStart) and event.kind == "tool_call":
            self._calls[event.index] = (event.id, event.name, [])
        elif isinstance(event, ToolArgsDelta) and event.index in self._calls:
            self._calls[event.index][2].append(event.json)
        elif isinstance(event, BlockStop) and event.index in self._calls:
            call_id, name, fragments = self._calls.pop(event.index)
            call: dict[str, Any] = {"name": name or "", "args": arguments_object("".join(fragments))}
            if call_id:
                call["id"] = call_id
            part: dict[str, Any] = {"functionCall": call}
            if self._signature is not None:
                part["thoughtSignature"], self._signature = self._signature, None
            out.append(self._chunk([part]))
        elif isinstance(event, UsageEvent):
            self._usage = event.usage
        elif isinstance(event, MessageStop):
            last: dict[str, Any] = {"text": ""}
            if self._signature is not None:
                last["thoughtSignature"], self._signature = self._signature, None
            out.append(self._chunk([last], w.FINISH_OUT[event.finish_reason]))
        elif isinstance(event, StreamError):
            out.append((None, orjson.dumps(w.error_body(GatewayError.from_info(event.error)))))
        elif isinstance(event, Complete):  # a non-streamed answer relayed to a stream: one chunk
            out.append((None, render_response(event.response, self._model, self._request_id)))
        return out


def render_error(err: GatewayError) -> tuple[int, bytes, dict[str, str]]:
    headers: dict[str, str] = {}
    if err.retry_after is not None:
        headers["retry-after"] = str(max(1, round(err.retry_after)))
    return err.status, orjson.dumps(w.error_body(err)), headers


def list_models(names: list[str], embedding: frozenset[str] = frozenset()) -> bytes:
    """`embedding`: the names that are embedding models (they list the embed methods instead)."""
    methods = ["generateContent", "streamGenerateContent"]
    embed_methods = ["embedContent", "batchEmbedContents"]
    models = [{"name": f"models/{n}", "baseModelId": n, "displayName": n,
               "supportedGenerationMethods": embed_methods if n in embedding else methods} for n in names]
    return orjson.dumps({"models": models})
