"""Anthropic Messages wire types for the client side (a client's `POST /v1/messages` body).

Typed msgspec structs so a bad body fails with an error naming the field (`$.messages[0].role`).
Unknown fields (cache_control, citations, service_tier, ...) are ignored; unknown content-block
types fail at their `type` field. Each content block converts itself to internal parts.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec
import orjson

from shared.errors import GatewayError
from shared.model import Document, Image, Part, Reasoning, Text, ToolCall, ToolChoice, ToolResult
from shared.protocols.common import PDF, PLAIN_TEXT, document_from_data

PROVIDER = "anthropic"

# HTTP status <-> Anthropic error type, both ways (rendering ours, reading theirs)
ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 402: "billing_error",
               403: "permission_error", 404: "not_found_error", 413: "request_too_large",
               429: "rate_limit_error", 500: "api_error", 502: "api_error", 503: "overloaded_error",
               504: "timeout_error", 529: "overloaded_error"}


class TextBlock(msgspec.Struct, tag_field="type", tag="text"):
    text: str

    def parts(self) -> list[Part]:
        return [Text(self.text)]


class Base64Source(msgspec.Struct, tag_field="type", tag="base64"):
    media_type: str
    data: str


class UrlSource(msgspec.Struct, tag_field="type", tag="url"):
    url: str


class ImageBlock(msgspec.Struct, tag_field="type", tag="image"):
    source: Base64Source | UrlSource

    def parts(self) -> list[Part]:
        src = self.source
        if isinstance(src, UrlSource):
            return [Image(url=src.url)]
        return [Image(data=src.data, media_type=src.media_type)]


class TextSource(msgspec.Struct, tag_field="type", tag="text"):
    data: str
    media_type: str = "text/plain"


class FileSource(msgspec.Struct, tag_field="type", tag="file"):
    """A file of Sluice's own Files API (the Anthropic SDK's `beta.files.upload`), resolved by the
    API (api/documents.py) before the job is queued."""

    file_id: str


class Citations(msgspec.Struct):
    enabled: bool = False


class DocumentBlock(msgspec.Struct, tag_field="type", tag="document"):
    """A PDF (base64 or URL) or plain text. Its `context` (text about the document) follows it
    as text; citations would need citation blocks in the answer, which no other protocol has."""

    source: Base64Source | UrlSource | TextSource | FileSource
    title: str | None = None
    context: str | None = None
    citations: Citations | None = None

    def parts(self) -> list[Part]:
        if self.citations is not None and self.citations.enabled:
            raise GatewayError("unsupported", "Document citations are not supported; send the document "
                               "without 'citations'.", param="citations.enabled")
        src = self.source
        if isinstance(src, UrlSource):
            doc = Document(url=src.url, media_type=PDF, title=self.title)
        elif isinstance(src, TextSource):
            doc = Document(text=src.data, media_type=PLAIN_TEXT, title=self.title)
        elif isinstance(src, FileSource):
            doc = Document(file_id=src.file_id, title=self.title)
        else:
            doc = document_from_data(src.media_type, src.data, self.title, "source.media_type")
        return [doc, Text(self.context)] if self.context else [doc]


class ToolUseBlock(msgspec.Struct, tag_field="type", tag="tool_use"):
    id: str
    name: str
    input: dict[str, Any] = msgspec.field(default_factory=dict)

    def parts(self) -> list[Part]:
        return [ToolCall(id=self.id, name=self.name, arguments=orjson.dumps(self.input).decode())]


class ToolResultBlock(msgspec.Struct, tag_field="type", tag="tool_result"):
    tool_use_id: str
    content: str | list[TextBlock | ImageBlock] | None = None
    is_error: bool = False

    def parts(self) -> list[Part]:
        # ToolResult holds text only: text blocks are joined, images follow the result as user parts.
        blocks = [TextBlock(self.content)] if isinstance(self.content, str) else self.content or []
        text = "".join(b.text for b in blocks if isinstance(b, TextBlock))
        images = [p for b in blocks if isinstance(b, ImageBlock) for p in b.parts()]
        return [ToolResult(tool_call_id=self.tool_use_id, content=text, is_error=self.is_error), *images]


class ThinkingBlock(msgspec.Struct, tag_field="type", tag="thinking"):
    thinking: str = ""
    signature: str | None = None

    def parts(self) -> list[Part]:
        return [Reasoning(text=self.thinking, signature=self.signature, provider=PROVIDER)]


class RedactedThinkingBlock(msgspec.Struct, tag_field="type", tag="redacted_thinking"):
    data: str

    def parts(self) -> list[Part]:
        return [Reasoning(redacted=self.data, provider=PROVIDER)]


Block = TextBlock | ImageBlock | DocumentBlock | ToolUseBlock | ToolResultBlock | ThinkingBlock | RedactedThinkingBlock


class MessageParam(msgspec.Struct):
    # Claude Code (2.1.x) also sends `system` messages inside `messages`; they join the system prompt.
    role: Literal["user", "assistant", "system"]
    content: str | list[Block]


class ToolParam(msgspec.Struct):
    name: str
    input_schema: dict[str, Any] | None = None
    description: str | None = None
    type: str | None = None  # None or "custom"; server tools (web_search_..., bash_...) are refused
    strict: bool | None = None


class ToolChoiceAuto(msgspec.Struct, tag_field="type", tag="auto"):
    disable_parallel_tool_use: bool | None = None

    def to_internal(self) -> ToolChoice:
        return ToolChoice(mode="auto")


class ToolChoiceAny(msgspec.Struct, tag_field="type", tag="any"):
    disable_parallel_tool_use: bool | None = None

    def to_internal(self) -> ToolChoice:
        return ToolChoice(mode="required")


class ToolChoiceTool(msgspec.Struct, tag_field="type", tag="tool"):
    name: str
    disable_parallel_tool_use: bool | None = None

    def to_internal(self) -> ToolChoice:
        return ToolChoice(mode="tool", name=self.name)


class ToolChoiceNone(msgspec.Struct, tag_field="type", tag="none"):
    disable_parallel_tool_use: bool | None = None

    def to_internal(self) -> ToolChoice:
        return ToolChoice(mode="none")


ToolChoiceParam = ToolChoiceAuto | ToolChoiceAny | ToolChoiceTool | ToolChoiceNone


class ThinkingEnabled(msgspec.Struct, tag_field="type", tag="enabled"):
    budget_tokens: int


class ThinkingDisabled(msgspec.Struct, tag_field="type", tag="disabled"):
    pass


class ThinkingAdaptive(msgspec.Struct, tag_field="type", tag="adaptive"):
    pass


ThinkingParam = ThinkingEnabled | ThinkingDisabled | ThinkingAdaptive


class Metadata(msgspec.Struct):
    user_id: str | None = None


class JsonSchemaFormat(msgspec.Struct, tag_field="type", tag="json_schema"):
    schema: dict[str, Any]


class OutputConfig(msgspec.Struct):
    format: JsonSchemaFormat | None = None
    effort: Literal["low", "medium", "high", "max"] | None = None


class Request(msgspec.Struct):
    model: str
    messages: list[MessageParam]
    max_tokens: int | None = None  # required by the API; checked by hand for a clear message
    system: str | list[TextBlock] | None = None
    stop_sequences: list[str] | None = None
    stream: bool | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    tools: list[ToolParam] | None = None
    tool_choice: ToolChoiceParam | None = None
    thinking: ThinkingParam | None = None
    metadata: Metadata | None = None
    output_config: OutputConfig | None = None


request_decoder = msgspec.json.Decoder(Request)
