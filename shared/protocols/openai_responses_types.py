"""Typed msgspec structs for OpenAI Responses request bodies (client -> Sluice).

Decoding into these gives errors that name the offending field. Input items and tools are
decoded per item (see openai_responses.py) so a message item may omit its `type`.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

ENVELOPE = "sluice."  # prefix of a reasoning item's encrypted_content that Sluice made


class InputText(msgspec.Struct, tag_field="type", tag="input_text"):
    text: str


class OutputText(msgspec.Struct, tag_field="type", tag="output_text"):
    text: str


class Refusal(msgspec.Struct, tag_field="type", tag="refusal"):
    refusal: str


class InputImage(msgspec.Struct, tag_field="type", tag="input_image"):
    image_url: str | None = None
    file_id: str | None = None
    detail: str | None = None


class InputFile(msgspec.Struct, tag_field="type", tag="input_file"):
    file_data: str | None = None  # data:application/pdf;base64,...
    file_url: str | None = None
    filename: str | None = None
    file_id: str | None = None


class InputAudio(msgspec.Struct, tag_field="type", tag="input_audio"):
    pass


ContentPart = InputText | OutputText | Refusal | InputImage | InputFile | InputAudio


class MessageItem(msgspec.Struct):
    role: Literal["user", "assistant", "system", "developer"]
    content: str | list[ContentPart]


class FunctionCallItem(msgspec.Struct):
    call_id: str
    name: str
    arguments: str = ""
    namespace: str | None = None  # a call to a tool of a `namespace` tool (see NamespaceTool)


class FunctionCallOutputItem(msgspec.Struct):
    call_id: str
    output: str | list[ContentPart]


class SummaryText(msgspec.Struct):
    text: str


class ReasoningItem(msgspec.Struct):
    summary: list[SummaryText] = msgspec.field(default_factory=list)
    content: list[SummaryText] | None = None  # reasoning_text parts
    encrypted_content: str | None = None


class FunctionTool(msgspec.Struct):
    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class NamespaceTool(msgspec.Struct):
    """A group of function tools under one name (Codex CLI sends its MCP servers' tools so)."""

    name: str
    tools: list[dict[str, Any]]
    description: str | None = None


class Format(msgspec.Struct):
    type: Literal["text", "json_object", "json_schema"]
    name: str = "response"
    schema: dict[str, Any] | None = None
    strict: bool | None = None


class TextConfig(msgspec.Struct):
    format: Format | None = None


Effort = Literal["none", "minimal", "low", "medium", "high", "xhigh", "max"]


class ReasoningConfig(msgspec.Struct):
    effort: Effort | None = None
    summary: str | None = None


class RequestBody(msgspec.Struct):
    model: str
    input: str | list[dict[str, Any]] | None = None
    instructions: str | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: Literal["auto", "none", "required"] | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    text: TextConfig | None = None
    reasoning: ReasoningConfig | None = None
    max_output_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stream: bool | None = False
    user: str | None = None
    safety_identifier: str | None = None
    store: bool | None = None  # None means true, as in OpenAI's API
    include: list[str] | None = None  # accepted: encrypted reasoning is always included
    previous_response_id: str | None = None
    conversation: str | dict[str, Any] | None = None
    background: bool | None = None
    prompt: dict[str, Any] | None = None
