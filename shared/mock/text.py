"""What the mock answers, decided once per request and rendered by each dialect.

Everything here is deterministic given the request body and the settings (see the package
docstring for the rules), except response ids, which count up per process.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson

WORDS = (
    "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel",
    "india", "juliet", "kilo", "lima", "mike", "november", "oscar", "papa",
)  # fmt: skip

TOOL_RESULT_PREFIX = "Tool result received: "
_CYCLE = [word + " " for word in WORDS] * 64  # sliced for the common counts, no per-token work

LastTurn = Literal["user", "tool_result", "other"]


@dataclass(slots=True)
class ToolCallPlan:
    id: str
    name: str
    arguments: dict[str, Any]
    arguments_json: str


@dataclass(slots=True)
class Plan:
    model: str
    stream: bool
    input_tokens: int
    max_tokens: int | None  # as requested; None when the request gave none
    chunk_tokens: int
    tokens: list[str] = field(default_factory=list)  # text pieces, one per output token
    tool: ToolCallPlan | None = None
    truncated: bool = False  # the text stopped at max_tokens
    output_tokens: int = 0
    include_usage: bool = False  # OpenAI stream_options.include_usage

    @property
    def text(self) -> str:
        return "".join(self.tokens)

    def text_chunks(self) -> list[str]:
        k = self.chunk_tokens
        if k == 1:
            return list(self.tokens)
        return ["".join(self.tokens[i : i + k]) for i in range(0, len(self.tokens), k)]

    def argument_chunks(self) -> list[str]:
        """The tool arguments JSON in at least two fragments (about four characters per token)."""
        assert self.tool is not None
        text = self.tool.arguments_json
        size = self.chunk_tokens * 4
        if len(text) <= size:
            size = max(1, (len(text) + 1) // 2)
        return [text[i : i + size] for i in range(0, len(text), size)]


@dataclass(slots=True)
class Conversation:
    """The dialect-neutral facts a dialect extracts from a request body."""

    model: str
    chars: int  # characters of all text: messages, system, tool calls/results, tool definitions
    max_tokens: int | None
    stream: bool
    last: LastTurn
    last_user_text: str  # text of the most recent user turn (for the echoed first word)
    tool_result_text: str  # when last == "tool_result": the result as text
    tool: tuple[str, dict[str, Any]] | None  # (name, JSON schema) to call; None = answer in text
    include_usage: bool = False
    offered: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # every function tool offered


def media_chars(data: str) -> int:
    """What an attachment (image, PDF) counts towards input tokens: a quarter of its base64, so a
    test can see in the usage that the attachment reached the upstream."""
    return len(data) // 4


def tokens_for_chars(chars: int) -> int:
    return max(1, (chars + 3) // 4)


def plan(conv: Conversation, *, output_tokens: int, chunk_tokens: int, call_id: Callable[[], str],
         tool_name: str | None = None, tool_arguments: dict[str, Any] | None = None,
         reply_text: str | None = None, reply_when: dict[str, str] | None = None) -> Plan:
    result = Plan(
        model=conv.model,
        stream=conv.stream,
        input_tokens=tokens_for_chars(conv.chars),
        max_tokens=conv.max_tokens,
        chunk_tokens=chunk_tokens,
        include_usage=conv.include_usage,
    )
    cap = conv.max_tokens
    if conv.tool is not None and conv.last == "user":
        name, schema = next((t for t in conv.offered if t[0] == tool_name), conv.tool)
        arguments = tool_arguments if tool_arguments is not None and name == tool_name else \
            arguments_from_schema(schema)
        arguments_json = orjson.dumps(arguments).decode()
        result.tool = ToolCallPlan(call_id(), name, arguments, arguments_json)
        # Tool calls are never truncated, whatever max_tokens says.
        result.output_tokens = tokens_for_chars(len(name) + len(arguments_json))
        return result
    reply_text = next((text for key, text in (reply_when or {}).items() if key in conv.last_user_text), reply_text)
    if reply_text is not None:
        tokens = re.findall(r"\s*\S+\s*", reply_text) or [reply_text]
        if cap is not None and len(tokens) > cap:
            del tokens[cap:]
            result.truncated = True
    elif conv.last == "tool_result":
        tokens = re.findall(r"\S+\s*", TOOL_RESULT_PREFIX + conv.tool_result_text[:40])
        if cap is not None and len(tokens) > cap:
            del tokens[cap:]
            result.truncated = True
    else:
        count = output_tokens if cap is None else min(output_tokens, cap)
        tokens = _CYCLE[:count] if count <= len(_CYCLE) else [WORDS[i % len(WORDS)] + " " for i in range(count)]
        first = conv.last_user_text.split(maxsplit=1)
        if tokens and first:
            tokens[0] = first[0][:32] + " "
        result.truncated = cap is not None and cap < output_tokens
    result.tokens = tokens
    result.output_tokens = len(tokens)
    return result


# --- tool arguments --------------------------------------------------------------------------

_SCALARS = {"string", "number", "integer", "boolean"}


def arguments_from_schema(schema: Any) -> dict[str, Any]:
    """An object for the common parts of a JSON schema: scalar properties always, others if required."""
    value = _value(schema, 0)
    return value if isinstance(value, dict) else {}


def _type_of(schema: dict[str, Any]) -> str | None:
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if isinstance(k, str) and k.lower() != "null"), None)
    if isinstance(kind, str):
        return kind.lower()  # Gemini's OpenAPI subset spells types in capitals
    if "properties" in schema:
        return "object"
    return None


def _value(schema: Any, depth: int) -> Any:
    if not isinstance(schema, dict) or depth > 8:
        return "mock"
    enum = schema.get("enum")
    if isinstance(enum, list) and enum:
        return enum[0]
    if "const" in schema:
        return schema["const"]
    for key in ("anyOf", "oneOf", "allOf"):
        options = schema.get(key)
        if isinstance(options, list) and options and _type_of(schema) is None:
            return _value(options[0], depth + 1)
    kind = _type_of(schema)
    if kind == "string":
        return "mock"
    if kind in ("number", "integer"):
        return 1
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    if kind == "array":
        return [_value(schema.get("items"), depth + 1)]
    if kind == "object":
        properties = schema.get("properties")
        required = schema.get("required")
        required_names = set(required) if isinstance(required, list) else set()
        out: dict[str, Any] = {}
        if isinstance(properties, dict):
            for name, prop in properties.items():
                prop_kind = _type_of(prop) if isinstance(prop, dict) else None
                if name in required_names or prop_kind in _SCALARS:
                    out[name] = _value(prop, depth + 1)
        return out
    return "mock"


# --- ids -------------------------------------------------------------------------------------

_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_PROCESS = os.urandom(3).hex()
_counter = itertools.count(1)


def stable_id(body: bytes, length: int) -> str:
    """`length` base62 characters derived from the request body (same request, same id)."""
    number = int.from_bytes(hashlib.blake2b(body, digest_size=24).digest(), "big")
    chars = []
    for _ in range(length):
        number, digit = divmod(number, 62)
        chars.append(_ALPHABET[digit])
    return "".join(chars)


def response_id(prefix: str) -> str:
    """Unique per process run: a random process tag and a counter."""
    return f"{prefix}mock{_PROCESS}{next(_counter):08x}"


def json_chars(value: Any) -> int:
    """Characters of a JSON value as text (tool schemas, object arguments, function responses)."""
    if isinstance(value, str):
        return len(value)
    try:
        return len(orjson.dumps(value))
    except TypeError:
        return 0
