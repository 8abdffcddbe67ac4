"""Gemini generateContent, both directions.

Client side: a client's `POST /v1beta/models/{model}:generateContent` (or
`:streamGenerateContent?alt=sse`) body -> ChatRequest; ChatResponse and stream events ->
GenerateContentResponse JSON and `data:`-only SSE chunks (no terminator).
Upstream side: ChatRequest -> a generateContent body for Google's API; its JSON and SSE chunks
-> ChatResponse and stream events.

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
from shared.protocols import gemini_types as w
from shared.protocols.errors_http import retry_after_from_headers, upstream_error
from shared.protocols.sse import SseFrame

_PROVIDER = "gemini"
BlockKind = Literal["text", "tool_call", "reasoning"]


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


# --- client side: parse ----------------------------------------------------------------------


def parse_request(body: bytes, model: str, stream: bool) -> ChatRequest:
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
        raise invalid(f"Invalid request body: {exc}", w.field_of(exc)) from None
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
    if not parts:
        return
    if messages and messages[-1].role == role:
        messages[-1].content.extend(parts)
    else:
        messages.append(Message(role=role, content=parts))


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
            out.append(ToolCall(id=call_id, name=fc.name, arguments=_dumps(fc.args or {}),
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
            out.append(ToolResult(tool_call_id=answered, content=_dumps(response), name=fr.name))
        elif p.thought and model_turn:
            out.append(Reasoning(text=p.text or "", signature=p.thought_signature))
        elif p.executable_code is not None or p.code_execution_result is not None:
            raise GatewayError("unsupported", "Code execution parts are not supported.", param=where)
        elif p.inline_data is not None:  # the SDK sends URL-safe base64; keep the standard alphabet
            data = p.inline_data.data.replace("-", "+").replace("_", "/")
            out.append(Image(data=data, media_type=p.inline_data.mime_type))
        elif p.file_data is not None:
            out.append(Image(url=p.file_data.file_uri, media_type=p.file_data.mime_type))
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


def _model_parts_out(content: list[Part], *, with_ids: bool, upstream: bool) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = []
    pending: str | None = None  # a signature-only Reasoning waiting for its part
    for p in content:
        if isinstance(p, ToolCall):
            call: dict[str, Any] = {"name": p.name, "args": w.args_object(p.arguments)}
            if with_ids:
                call["id"] = p.id
            part: dict[str, Any] = {"functionCall": call}
            signature, pending = p.signature or pending, None
            if signature:
                part["thoughtSignature"] = signature
            parts.append(part)
            continue
        if isinstance(p, Reasoning) and upstream and p.provider not in (None, _PROVIDER):
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
    parts = _model_parts_out(response.content, with_ids=True, upstream=False)
    candidate = {"content": {"role": "model", "parts": parts},
                 "finishReason": w.FINISH_OUT[response.finish_reason], "index": 0}
    return {"candidates": [candidate], "usageMetadata": w.usage_metadata(response.usage),
            "modelVersion": model, "responseId": request_id}


def render_response(response: ChatResponse, model: str, request_id: str) -> bytes:
    return orjson.dumps(_response_dict(response, model, request_id))


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

    def _flush(self, out: list[tuple[str | None, bytes]]) -> None:
        if self._signature is not None:
            out.append(self._chunk([{"text": "", "thoughtSignature": self._signature}]))
            self._signature = None

    def render(self, event: StreamEvent) -> list[tuple[str | None, bytes]]:
        """Returns (SSE event name, data) pairs; Gemini uses no event names."""
        out: list[tuple[str | None, bytes]] = []
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
            call: dict[str, Any] = {"name": name or "", "args": w.args_object("".join(fragments))}
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


def list_models(names: list[str]) -> bytes:
    methods = ["generateContent", "streamGenerateContent"]
    models = [{"name": f"models/{n}", "baseModelId": n, "displayName": n,
               "supportedGenerationMethods": methods} for n in names]
    return orjson.dumps({"models": models})


# --- upstream side: request ------------------------------------------------------------------


def path(upstream_model: str, stream: bool) -> str:
    model = upstream_model.removeprefix("models/")
    if stream:
        return f"/v1beta/models/{model}:streamGenerateContent?alt=sse"
    return f"/v1beta/models/{model}:generateContent"


def headers(api_key: str) -> dict[str, str]:
    return {"x-goog-api-key": api_key, "content-type": "application/json"}


def build_request(req: ChatRequest, upstream_model: str) -> dict[str, Any]:
    """`upstream_model` goes in the URL (see `path`), not the body. `parallel_tool_calls` and
    `user` have no Gemini field and are dropped."""
    body: dict[str, Any] = {"contents": _contents_out(req.messages)}
    if req.system:
        body["systemInstruction"] = {"parts": [{"text": t.text} for t in req.system]}
    if req.tools:
        body["tools"] = [{"functionDeclarations": [_declaration_out(t) for t in req.tools]}]
    if req.tool_choice is not None:
        tc = req.tool_choice
        fcc: dict[str, Any] = {"mode": {"auto": "AUTO", "none": "NONE"}.get(tc.mode, "ANY")}
        if tc.mode == "tool" and tc.name:
            fcc["allowedFunctionNames"] = [tc.name]
        body["toolConfig"] = {"functionCallingConfig": fcc}
    config = _generation_config_out(req)
    if config:
        body["generationConfig"] = config
    return body


def _declaration_out(tool: Tool) -> dict[str, Any]:
    out: dict[str, Any] = {"name": tool.name}
    if tool.description is not None:
        out["description"] = tool.description
    if tool.parameters:
        out["parametersJsonSchema"] = tool.parameters
    return out


def _generation_config_out(req: ChatRequest) -> dict[str, Any]:
    config: dict[str, Any] = {}
    for field, value in (("temperature", req.temperature), ("topP", req.top_p), ("topK", req.top_k),
                         ("maxOutputTokens", req.max_tokens), ("seed", req.seed)):
        if value is not None:
            config[field] = value
    if req.stop:
        config["stopSequences"] = req.stop
    if req.n != 1:
        config["candidateCount"] = req.n
    rf = req.response_format
    if rf is not None and rf.type != "text":
        config["responseMimeType"] = "application/json"
        if rf.type == "json_schema" and rf.schema is not None:
            config["responseJsonSchema"] = rf.schema
    if req.reasoning_effort in w.EFFORT_BUDGET:
        config["thinkingConfig"] = {"thinkingBudget": w.EFFORT_BUDGET[req.reasoning_effort]}
    return config


def _contents_out(messages: list[Message]) -> list[dict[str, Any]]:
    turns: list[tuple[str, list[Part]]] = []  # consecutive same-role messages merged
    names: dict[str, str] = {}  # tool call id -> function name; the latest earlier call wins
    for i, m in enumerate(messages):
        content: list[Part] = []
        for j, p in enumerate(m.content):
            if isinstance(p, ToolCall):
                names[p.id] = p.name
            elif isinstance(p, ToolResult):
                name = names.get(p.tool_call_id) or p.name
                if not name:
                    raise invalid(f"Tool result '{p.tool_call_id}' answers no earlier tool call; Gemini "
                                  "needs the function name.", f"messages[{i}].content[{j}].tool_call_id")
                p = msgspec.structs.replace(p, name=name)
            content.append(p)
        if turns and turns[-1][0] == m.role:
            turns[-1][1].extend(content)
        else:
            turns.append((m.role, content))
    contents: list[dict[str, Any]] = []
    order: dict[str, int] = {}  # tool call id -> position in the latest model turn
    for role, content in turns:
        if role == "assistant":
            order = {c.id: k for k, c in enumerate(p for p in content if isinstance(p, ToolCall))}
            parts = _model_parts_out(content, with_ids=False, upstream=True)
        else:
            parts = _user_parts_out(content, order)
        if not parts:
            continue
        gemini_role = "model" if role == "assistant" else "user"
        if contents and contents[-1]["role"] == gemini_role:
            contents[-1]["parts"].extend(parts)
        else:
            contents.append({"role": gemini_role, "parts": parts})
    return contents


def _user_parts_out(content: list[Part], order: dict[str, int]) -> list[dict[str, Any]]:
    """Function responses first, in the order their calls were made (Gemini pairs them so)."""
    responses: list[tuple[int, dict[str, Any]]] = []
    others: list[dict[str, Any]] = []
    for p in content:
        if isinstance(p, ToolResult):
            payload = {"functionResponse": {"name": p.name, "response": w.response_object(p)}}
            responses.append((order.get(p.tool_call_id, len(order)), payload))
        elif isinstance(p, Text):
            if p.text:
                others.append({"text": p.text})
        elif isinstance(p, Image):
            others.append(w.image_part(p))
    responses.sort(key=lambda r: r[0])
    return [r[1] for r in responses] + others


# --- upstream side: responses ----------------------------------------------------------------

def _finish_in(data: w.WireResponse, reason: str | None, saw_tool: bool) -> FinishReason:
    if not data.candidates and data.prompt_feedback and data.prompt_feedback.block_reason:
        return "content_filter"
    finish = w.FINISH_IN.get(reason or "STOP", "end_turn")
    return "tool_use" if saw_tool and finish == "end_turn" else finish  # Gemini says STOP for calls


def _call_id(response_id: str | None, n: int) -> str:
    return f"call_{response_id}_{n}" if response_id else f"call_{n}"


def parse_response(body: bytes) -> ChatResponse:
    data = w.decode_response(body)
    if data.error is not None:
        raise w.status_error(data.error)
    candidate = data.candidates[0] if data.candidates else None
    parts: list[Part] = []
    calls = 0
    for p in candidate.content.parts if candidate and candidate.content else []:
        if p.function_call is not None:
            fc = p.function_call
            parts.append(ToolCall(id=fc.id or _call_id(data.response_id, calls), name=fc.name,
                                  arguments=_dumps(fc.args or {}), signature=p.thought_signature))
            calls += 1
        elif p.thought:
            parts.append(Reasoning(text=p.text or "", signature=p.thought_signature, provider=_PROVIDER))
        else:
            if p.inline_data is not None:
                parts.append(Image(data=p.inline_data.data, media_type=p.inline_data.mime_type))
            if p.text:
                parts.append(Text(p.text))
            if p.thought_signature:
                parts.append(Reasoning(signature=p.thought_signature, provider=_PROVIDER))
    return ChatResponse(
        id=data.response_id or "", model=data.model_version or "", content=parts,
        finish_reason=_finish_in(data, candidate.finish_reason if candidate else None, calls > 0),
        usage=data.usage_metadata.usage() if data.usage_metadata else Usage(),
    )


class StreamParser:
    """Gemini `alt=sse` chunks -> internal events. One instance per upstream stream."""

    def __init__(self) -> None:
        self._started = False
        self._open: int | None = None
        self._open_kind: BlockKind | None = None
        self._next = 0
        self._calls = 0
        self._response_id: str | None = None
        self._finish: FinishReason | None = None
        self._usage: Usage | None = None
        self.done = False

    def _block(self, kind: BlockKind, out: list[StreamEvent], call_id: str | None = None,
               name: str | None = None) -> int:
        """The open block of `kind` (text and reasoning continue), else a new one."""
        if self._open is not None and self._open_kind == kind and kind != "tool_call":
            return self._open
        self._close(out)
        index, self._next = self._next, self._next + 1
        self._open, self._open_kind = index, kind
        out.append(BlockStart(index, kind, call_id, name, provider=_PROVIDER if kind == "reasoning" else None))
        return index

    def _close(self, out: list[StreamEvent]) -> None:
        if self._open is not None:
            out.append(BlockStop(self._open))
            self._open = self._open_kind = None

    def feed(self, frame: SseFrame) -> list[StreamEvent]:
        if self.done or not frame.data.strip():
            return []
        try:
            data = w.decode_response(frame.data)
        except GatewayError as err:
            self.done = True
            return [StreamError(err.info())]
        if data.error is not None:
            self.done = True
            return [StreamError(w.status_error(data.error).info())]
        out: list[StreamEvent] = []
        if not self._started:
            self._started = True
            self._response_id = data.response_id
            prompt = data.usage_metadata.prompt_token_count if data.usage_metadata else 0
            out.append(MessageStart(data.response_id or "", data.model_version or "", prompt))
        if data.usage_metadata is not None:
            self._usage = data.usage_metadata.usage()
        candidate = next((c for c in data.candidates or [] if c.index == 0), None)
        for p in candidate.content.parts if candidate and candidate.content else []:
            self._part(p, out)
        if candidate and candidate.finish_reason:
            self._finish = _finish_in(data, candidate.finish_reason, False)
        elif not data.candidates and data.prompt_feedback and data.prompt_feedback.block_reason:
            self._finish = "content_filter"
        return out

    def _part(self, p: w.WirePart, out: list[StreamEvent]) -> None:
        if p.function_call is not None:
            fc = p.function_call
            if p.thought_signature:  # a signature-only reasoning block of its own, just before the call
                self._close(out)
                out.append(ReasoningDelta(self._block("reasoning", out), signature=p.thought_signature))
            call_id = fc.id or _call_id(self._response_id, self._calls)
            self._calls += 1
            index = self._block("tool_call", out, call_id, fc.name)
            out.append(ToolArgsDelta(index, _dumps(fc.args or {})))
            self._close(out)
        elif p.thought:
            index = self._block("reasoning", out)
            if p.text:
                out.append(ReasoningDelta(index, p.text))
            if p.thought_signature:
                out.append(ReasoningDelta(index, signature=p.thought_signature))
        else:
            if p.text:
                out.append(TextDelta(self._block("text", out), p.text))
            if p.thought_signature:  # after the text it came with: a reasoning block of its own
                self._close(out)
                out.append(ReasoningDelta(self._block("reasoning", out), signature=p.thought_signature))

    def finish(self) -> list[StreamEvent]:
        if self.done:
            return []
        self.done = True
        if self._finish is None:
            ended = GatewayError("upstream_unavailable", "the upstream stream ended early")
            return [StreamError(ended.info())]
        out: list[StreamEvent] = []
        self._close(out)
        if self._usage is not None:
            out.append(UsageEvent(self._usage))
        finish = "tool_use" if self._calls and self._finish == "end_turn" else self._finish
        out.append(MessageStop(finish))
        return out


def parse_error(status: int, body: bytes, headers: dict[str, str]) -> GatewayError:
    message = body[:500].decode(errors="replace")
    retry_after: float | None = None
    try:
        data: Any = orjson.loads(body)
    except orjson.JSONDecodeError:
        data = None
    if isinstance(data, list) and len(data) == 1:  # some Google paths wrap the error in an array
        data = data[0]
    err = data.get("error") if isinstance(data, dict) else None
    if isinstance(err, dict):
        message = str(err.get("message") or message)
        retry_after = w.retry_delay(err.get("details"))
        if w.bad_api_key(err.get("details")):  # a key problem, not the request's: take the key out
            status = 401
    if retry_after is None:
        retry_after = retry_after_from_headers(headers)
    return upstream_error(status, message, retry_after)
