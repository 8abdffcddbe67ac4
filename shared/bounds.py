"""Bounds on what one decoded request may carry (messages, content parts, string lengths,
open-JSON depth, `max_tokens` against the model's limit, embedding inputs), from
`request_limits`. Pure, so the API (api/limits.py) and batch validation
(shared/batches/lines.py) apply the same ones.
"""

from __future__ import annotations

from typing import Any

from shared.config import Model, RequestLimits
from shared.embeddings import EmbeddingRequest
from shared.errors import invalid
from shared.model import ChatRequest, Reasoning, Text, ToolCall, ToolResult


def check_request(req: ChatRequest, model: Model | None, limits: RequestLimits) -> None:
    if len(req.messages) > limits.max_messages:
        raise invalid(f"Too many messages: {len(req.messages)} (the limit is {limits.max_messages}).", "messages")
    parts = 0
    longest = max((len(t.text) for t in req.system), default=0)
    for message in req.messages:
        parts += len(message.content)
        for part in message.content:
            longest = max(longest, _length(part))
    if parts > limits.max_content_parts:
        raise invalid(f"Too many content parts: {parts} (the limit is {limits.max_content_parts}).", "messages")
    if longest > limits.max_string_chars:
        raise invalid(f"A text of {longest} characters is longer than the limit of {limits.max_string_chars}.",
                      "messages")
    for i, tool in enumerate(req.tools):
        if _depth(tool.parameters) > limits.max_json_depth:
            raise invalid(f"The tool's parameters are nested deeper than {limits.max_json_depth} levels.",
                          f"tools[{i}]")
    if req.response_format is not None and _depth(req.response_format.schema) > limits.max_json_depth:
        raise invalid(f"The response format's schema is nested deeper than {limits.max_json_depth} levels.",
                      "response_format")
    if model is not None and model.max_tokens is not None and req.max_tokens is not None \
            and req.max_tokens > model.max_tokens:
        raise invalid(f"max_tokens is {req.max_tokens}, above the model's limit of {model.max_tokens}.",
                      "max_tokens")


MAX_EMBEDDING_DIMENSIONS = 65_536
"""Far above any provider's (3,072 today); what a vector may be asked to hold, since the answer
is inputs x dimensions numbers that the worker, Redis and the API all hold."""


def check_embedding(req: EmbeddingRequest, limits: RequestLimits, field: str = "input",
                    dimensions_field: str = "dimensions") -> None:
    """An embedding request's inputs: how many, and how long each (a text's characters, a token
    array's tokens), under the same limits as a conversation's parts and strings; and the size
    of the vectors asked for."""
    if req.dimensions is not None and not 0 < req.dimensions <= MAX_EMBEDDING_DIMENSIONS:
        raise invalid(f"The dimensions asked for must be between 1 and {MAX_EMBEDDING_DIMENSIONS}.",
                      dimensions_field)
    if len(req.inputs) > limits.max_content_parts:
        raise invalid(f"Too many inputs: {len(req.inputs)} (the limit is {limits.max_content_parts}).", field)
    longest = max((len(i) for i in req.inputs), default=0)
    if longest > limits.max_string_chars:
        raise invalid(f"An input of {longest} characters or tokens is longer than the limit of "
                      f"{limits.max_string_chars}.", field)


def _length(part: object) -> int:
    if isinstance(part, Text | Reasoning):
        return len(part.text)
    if isinstance(part, ToolCall):
        return len(part.arguments)
    if isinstance(part, ToolResult):
        return len(part.content)
    return 0


def _depth(value: Any, limit: int = 1000) -> int:
    """Nesting depth of decoded JSON, iteratively (a recursive walk is what a deep value attacks)."""
    deepest = 0
    todo: list[tuple[Any, int]] = [(value, 1)]
    while todo:
        item, depth = todo.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, depth)
            if deepest > limit:
                return deepest
            todo.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return deepest
