"""Stored Responses (OpenAI Responses `store: true`): the record, its codec and its Redis key.

One key per stored response, `{p}:resp:<client>:{<id>}` (STRING, msgspec JSON, TTL
`responses.ttl_seconds`). The client's *name* is part of the key, so another client key never
finds it (a 404, as if it did not exist) and the key itself is never written anywhere. The id is
the job id (96 random bits), so it cannot be guessed.

A record keeps the whole conversation the response answered (`request`, already rebuilt from
any `previous_response_id` chain) plus the answer, so a follow-up needs exactly one read and the
chain is rebuilt for any upstream from the internal model, not from OpenAI's item shapes.
`input_items` are the client's own input items as sent (ids added), for `input_items.list`.
"""

from __future__ import annotations

from typing import Any

import msgspec
import redis.asyncio as aioredis

from shared.model import (
    BlockStart,
    ChatRequest,
    ChatResponse,
    Complete,
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
    ToolArgsDelta,
    ToolCall,
    ToolResult,
    Usage,
    UsageEvent,
)
from shared.protocols.common import append_turn


class StoredResponse(msgspec.Struct, omit_defaults=True):
    id: str  # the job id; clients see it as "resp_<id>"
    created_at: int
    request: ChatRequest  # the whole conversation it answered, previous responses included
    response: ChatResponse
    input_items: list[dict[str, Any]] = msgspec.field(default_factory=list)  # open JSON, as sent
    previous_response_id: str | None = None

    def history(self) -> list[Message]:
        """The conversation so far, this response's answer included: what a follow-up extends."""
        messages = [Message(m.role, list(m.content)) for m in self.request.messages]
        if self.response.content:
            append_turn(messages, "assistant", list(self.response.content))
        return messages


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(StoredResponse)


def key(prefix: str, client: str, response_id: str) -> str:
    return f"{prefix}:resp:{client}:{{{response_id}}}"


async def save(redis: aioredis.Redis, prefix: str, client: str, record: StoredResponse, ttl: int) -> None:
    await redis.set(key(prefix, client, record.id), _encoder.encode(record), ex=ttl)


async def load(redis: aioredis.Redis, prefix: str, client: str, response_id: str) -> StoredResponse | None:
    raw = await redis.get(key(prefix, client, response_id))
    return None if raw is None else _decoder.decode(raw)


async def delete(redis: aioredis.Redis, prefix: str, client: str, response_id: str) -> bool:
    return bool(await redis.delete(key(prefix, client, response_id)))


def continue_from(previous: StoredResponse, req: ChatRequest) -> None:
    """`req` (this turn's input) becomes the whole conversation: the stored history, then the new
    messages, merged by role. Tool results get the function name from the stored calls (Gemini
    needs it). `instructions` are not carried over, as OpenAI documents; system items that came
    in earlier *input* are (they are part of the conversation)."""
    messages = previous.history()
    names = {p.id: p.name for m in messages for p in m.content if isinstance(p, ToolCall)}
    for message in req.messages:
        parts: list[Part] = []
        for part in message.content:
            if isinstance(part, ToolResult) and part.name is None and part.tool_call_id in names:
                part = ToolResult(part.tool_call_id, part.content, part.is_error, names[part.tool_call_id])
            parts.append(part)
        append_turn(messages, message.role, parts)
    req.messages = messages


# --- a streamed answer, folded back into one ChatResponse ----------------------------------------


def fold(events: list[StreamEvent]) -> ChatResponse | None:
    """The events of one answer's record -> the answer; None when it has not finished well."""
    rid, model = "", ""
    blocks: dict[int, Part] = {}
    usage = Usage()
    for event in events:
        if isinstance(event, Complete):
            return event.response
        if isinstance(event, MessageStart):
            rid, model = event.id, event.model
            usage = Usage(input_tokens=event.input_tokens)
        elif isinstance(event, BlockStart):
            blocks[event.index] = (ToolCall(event.id or "", event.name or "", "") if event.kind == "tool_call"
                                   else Reasoning() if event.kind == "reasoning" else Text(""))
        elif isinstance(event, TextDelta):
            block = blocks.setdefault(event.index, Text(""))
            if isinstance(block, Text):
                block.text += event.text
        elif isinstance(event, ToolArgsDelta):
            call = blocks.get(event.index)
            if isinstance(call, ToolCall):
                call.arguments += event.json
        elif isinstance(event, ReasoningDelta):
            block = blocks.setdefault(event.index, Reasoning())
            if isinstance(block, Reasoning):
                block.text += event.text
                block.signature = event.signature or block.signature
                block.redacted = event.redacted or block.redacted
                block.provider = event.provider or block.provider
        elif isinstance(event, UsageEvent):
            usage = event.usage
        elif isinstance(event, MessageStop):
            content = [blocks[i] for i in sorted(blocks)]
            return ChatResponse(rid, model, content, event.finish_reason, usage, event.stop_sequence)
        elif isinstance(event, StreamError):
            return None
    return None
