"""The one internal model every dialect converts to and from.

It follows no vendor's shape: a request is a system prompt plus messages made of typed
content parts; a response is a list of parts plus a finish reason and usage; a stream is a
small, block-indexed union of events. Everything here is a msgspec Struct so the same types
cross Redis (worker -> API) at a few microseconds per event, and so client bodies decode with
errors that name the offending field.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

# --- content parts ---------------------------------------------------------------------------


class Text(msgspec.Struct, tag="text", omit_defaults=True):
    text: str


class Image(msgspec.Struct, tag="image", omit_defaults=True):
    """An image either by URL or inline (base64 `data` plus `media_type`)."""

    url: str | None = None
    data: str | None = None
    media_type: str | None = None


class Document(msgspec.Struct, tag="document", omit_defaults=True):
    """A document for the model to read: a PDF inline (base64 `data`) or by `url`, or plain `text`.
    `title` is the client's file name or document title, when it gave one. `file_id` is a file of
    Sluice's own Files API as the client referred to it: the API resolves it (api/documents.py)
    into `data` or `text` before the job is queued, so no job a worker takes holds one."""

    data: str | None = None
    url: str | None = None
    text: str | None = None
    media_type: str | None = None  # application/pdf for data and url; text/plain for text
    title: str | None = None
    file_id: str | None = None


class ToolCall(msgspec.Struct, tag="tool_call", omit_defaults=True):
    id: str
    name: str
    arguments: str  # JSON text, exactly as the model produced it
    signature: str | None = None  # provider-opaque blob (e.g. Gemini thoughtSignature)


class ToolResult(msgspec.Struct, tag="tool_result", omit_defaults=True):
    tool_call_id: str
    content: str
    is_error: bool = False
    name: str | None = None  # Gemini needs the function name; filled from history when known


class Reasoning(msgspec.Struct, tag="reasoning", omit_defaults=True):
    text: str = ""
    signature: str | None = None
    redacted: str | None = None  # opaque redacted block (Anthropic redacted_thinking)
    provider: str | None = None  # signatures only round-trip to the provider that made them


Part = Text | Image | Document | ToolCall | ToolResult | Reasoning


class Message(msgspec.Struct, omit_defaults=True):
    role: Literal["user", "assistant"]
    content: list[Part]


# --- request ---------------------------------------------------------------------------------


class Tool(msgspec.Struct, omit_defaults=True):
    name: str
    parameters: dict[str, Any] = msgspec.field(default_factory=dict)
    description: str | None = None
    strict: bool | None = None
    namespace: str | None = None  # a Responses `namespace` tool's name; `name` is then joined to it


class ToolChoice(msgspec.Struct, omit_defaults=True):
    mode: Literal["auto", "none", "required", "tool"]
    name: str | None = None


class ResponseFormat(msgspec.Struct, omit_defaults=True):
    type: Literal["text", "json_object", "json_schema"]
    name: str | None = None
    schema: dict[str, Any] | None = None
    strict: bool | None = None


class ChatRequest(msgspec.Struct, omit_defaults=True):
    model: str
    messages: list[Message]
    system: list[Text] = msgspec.field(default_factory=list)
    tools: list[Tool] = msgspec.field(default_factory=list)
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    response_format: ResponseFormat | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    stop: list[str] = msgspec.field(default_factory=list)
    n: int = 1
    seed: int | None = None
    reasoning_effort: str | None = None
    stream: bool = False
    include_usage: bool = False
    user: str | None = None


# --- response --------------------------------------------------------------------------------

FinishReason = Literal["end_turn", "stop_sequence", "max_tokens", "tool_use", "content_filter", "error"]


class Usage(msgspec.Struct, omit_defaults=True):
    input_tokens: int = 0  # all prompt tokens, cached included
    output_tokens: int = 0  # all generated tokens, reasoning included
    cached_input_tokens: int = 0
    reasoning_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


class ChatResponse(msgspec.Struct, omit_defaults=True):
    id: str
    model: str
    content: list[Part]
    finish_reason: FinishReason
    usage: Usage = msgspec.field(default_factory=Usage)
    stop_sequence: str | None = None


# --- stream events ---------------------------------------------------------------------------
# Blocks are indexed in output order; a block is opened, receives deltas, then is closed.


class Timing(msgspec.Struct, omit_defaults=True):
    """Where a job's time went, as its worker saw it (milliseconds; `done_at` is unix seconds)."""

    queue_ms: float = 0.0  # enqueued -> claimed
    dispatch_ms: float = 0.0  # claimed -> request sent upstream
    upstream_ms: float = 0.0  # request sent -> answer read (a stream's first event, for a stream)
    done_at: float = 0.0


class MessageStart(msgspec.Struct, tag="start", omit_defaults=True):
    id: str
    model: str
    input_tokens: int = 0
    # Set by the worker on the stream's first write, so the API can report its overhead in the
    # response headers, which it holds back until that write arrives. Renderers ignore it.
    timing: Timing | None = None


class BlockStart(msgspec.Struct, tag="block", omit_defaults=True):
    index: int
    kind: Literal["text", "tool_call", "reasoning"]
    id: str | None = None
    name: str | None = None


class TextDelta(msgspec.Struct, tag="text", omit_defaults=True):
    index: int
    text: str


class ToolArgsDelta(msgspec.Struct, tag="args", omit_defaults=True):
    index: int
    json: str


class ReasoningDelta(msgspec.Struct, tag="think", omit_defaults=True):
    """Reasoning text, or the opaque parts of a reasoning block. A redacted block (Anthropic
    redacted_thinking) arrives whole as one delta carrying `redacted`, with no BlockStart before
    it (its kind is only known whole), then its BlockStop."""

    index: int
    text: str = ""
    signature: str | None = None
    redacted: str | None = None
    provider: str | None = None  # who made `signature`/`redacted`: they only go back there


class BlockStop(msgspec.Struct, tag="block_stop", omit_defaults=True):
    index: int


class UsageEvent(msgspec.Struct, tag="usage", omit_defaults=True):
    usage: Usage


class MessageStop(msgspec.Struct, tag="stop", omit_defaults=True):
    finish_reason: FinishReason
    stop_sequence: str | None = None


class ErrorInfo(msgspec.Struct, omit_defaults=True):
    kind: str
    message: str
    status: int = 500
    retry_after: float | None = None
    param: str | None = None
    retryable: bool = False  # a fault worth another try (a cut stream, a 5xx), not the request's


class StreamError(msgspec.Struct, tag="error", omit_defaults=True):
    error: ErrorInfo


class Complete(msgspec.Struct, tag="complete", omit_defaults=True):
    """A whole non-streaming answer, sent as one event."""

    response: ChatResponse
    timing: Timing | None = None


StreamEvent = (
    MessageStart
    | BlockStart
    | TextDelta
    | ToolArgsDelta
    | ReasoningDelta
    | BlockStop
    | UsageEvent
    | MessageStop
    | StreamError
    | Complete
)

TERMINAL_EVENTS = (MessageStop, StreamError, Complete)
