"""Gemini generateContent, upstream side: ChatRequest -> a generateContent body for Google's API;
its JSON answers and `alt=sse` chunks -> ChatResponse and stream events. Implements
`UpstreamDialect`; the model is in the URL (`path`), not the body.

Ids are not sent (Gemini pairs calls and results by name and order): each functionResponse gets
the name of the earlier ToolCall with its id, and answers' missing call ids become
`call_<responseId>_<n>`. Thought signatures follow the rules in `gemini.py`.
"""

from __future__ import annotations

from typing import Any

import msgspec
import orjson

from shared.errors import GatewayError, invalid
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
from shared.protocols import gemini_types as w
from shared.protocols.common import PDF, OpenBlock, decode_answer, document_text, dumps
from shared.protocols.errors_http import retry_after_from_headers, upstream_error
from shared.protocols.gemini import PROVIDER, model_parts_out
from shared.protocols.sse import SseFrame

# --- upstream side: request ------------------------------------------------------------------


def path(upstream_model: str, stream: bool) -> str:
    model = upstream_model.removeprefix("models/")
    if stream:
        return f"/v1beta/models/{model}:streamGenerateContent?alt=sse"
    return f"/v1beta/models/{model}:generateContent"


def headers(api_key: str) -> dict[str, str]:
    return {"x-goog-api-key": api_key, "content-type": "application/json"}


def build_request(req: ChatRequest, upstream_model: str, default_max_tokens: int = 4096) -> dict[str, Any]:
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
            parts = model_parts_out(content, with_ids=False, upstream=True)
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
        elif isinstance(p, Document):
            others.append(_document_out(p))
    responses.sort(key=lambda r: r[0])
    return [r[1] for r in responses] + others


def _document_out(doc: Document) -> dict[str, Any]:
    if doc.text is not None:
        return {"text": document_text(doc)}
    if doc.url is not None:
        return {"fileData": {"mimeType": doc.media_type or PDF, "fileUri": doc.url}}
    return {"inlineData": {"mimeType": doc.media_type or PDF, "data": doc.data}}


# --- upstream side: responses ----------------------------------------------------------------

def _finish_in(data: w.WireResponse, reason: str | None, saw_tool: bool) -> FinishReason:
    if not data.candidates and data.prompt_feedback and data.prompt_feedback.block_reason:
        return "content_filter"
    finish = w.FINISH_IN.get(reason or "STOP", "end_turn")
    return "tool_use" if saw_tool and finish == "end_turn" else finish  # Gemini says STOP for calls


def _call_id(response_id: str | None, n: int) -> str:
    return f"call_{response_id}_{n}" if response_id else f"call_{n}"


def parse_response(body: bytes) -> ChatResponse:
    data = decode_answer(w.response_decoder, body)
    if data.error is not None:
        raise w.status_error(data.error)
    candidate = data.candidates[0] if data.candidates else None
    parts: list[Part] = []
    calls = 0
    for p in candidate.content.parts if candidate and candidate.content else []:
        if p.function_call is not None:
            fc = p.function_call
            parts.append(ToolCall(id=fc.id or _call_id(data.response_id, calls), name=fc.name,
                                  arguments=dumps(fc.args or {}), signature=p.thought_signature))
            calls += 1
        elif p.thought:
            parts.append(Reasoning(text=p.text or "", signature=p.thought_signature, provider=PROVIDER))
        else:
            if p.inline_data is not None:
                parts.append(Image(data=p.inline_data.data, media_type=p.inline_data.mime_type))
            if p.text:
                parts.append(Text(p.text))
            if p.thought_signature:
                parts.append(Reasoning(signature=p.thought_signature, provider=PROVIDER))
    return ChatResponse(
        id=data.response_id or "", model=data.model_version or "", content=parts,
        finish_reason=_finish_in(data, candidate.finish_reason if candidate else None, calls > 0),
        usage=data.usage_metadata.usage() if data.usage_metadata else Usage(),
    )


def stream_parser() -> StreamParser:
    return StreamParser()


class StreamParser:
    """Gemini `alt=sse` chunks -> internal events. One instance per upstream stream."""

    def __init__(self) -> None:
        self._started = False
        self._block = OpenBlock()
        self._calls = 0
        self._response_id: str | None = None
        self._finish: FinishReason | None = None
        self._usage: Usage | None = None
        self.done = False

    def feed(self, frame: SseFrame) -> list[StreamEvent]:
        if self.done or not frame.data.strip():
            return []
        try:
            data = decode_answer(w.response_decoder, frame.data)
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
                self._block.close(out)
                signed = self._block.of("reasoning", out)
                out.append(ReasoningDelta(signed, signature=p.thought_signature, provider=PROVIDER))
            call_id = fc.id or _call_id(self._response_id, self._calls)
            self._calls += 1
            index = self._block.start("tool_call", out, call_id, fc.name)
            out.append(ToolArgsDelta(index, dumps(fc.args or {})))
            self._block.close(out)
        elif p.thought:
            index = self._block.of("reasoning", out)
            if p.text:
                out.append(ReasoningDelta(index, p.text))
            if p.thought_signature:
                out.append(ReasoningDelta(index, signature=p.thought_signature, provider=PROVIDER))
        else:
            if p.text:
                out.append(TextDelta(self._block.of("text", out), p.text))
            if p.thought_signature:  # after the text it came with: a reasoning block of its own
                self._block.close(out)
                signed = self._block.of("reasoning", out)
                out.append(ReasoningDelta(signed, signature=p.thought_signature, provider=PROVIDER))

    def finish(self) -> list[StreamEvent]:
        if self.done:
            return []
        self.done = True
        if self._finish is None:
            ended = GatewayError("upstream_unavailable", "the upstream stream ended early")
            return [StreamError(ended.info())]
        out: list[StreamEvent] = []
        self._block.close(out)
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
