"""Anthropic Messages: `POST /v1/messages` (and the Anthropic shape of `GET /v1/models`).

Strict where the real API is strict, so gateway conversion bugs surface here and not in production:
- `x-api-key` (or `Authorization: Bearer`, which anthropic-python >= 2 sends) must be present, and
  equal `api_key` when one is set -> 401 authentication_error;
  `anthropic-version` must be present -> 400;
- unknown top-level fields, a missing `model`/`max_tokens`/`messages`, roles other than
  user/assistant, empty messages or empty text blocks -> 400 invalid_request_error;
- consecutive same-role messages are merged into one turn (as the real API does), then every
  `tool_use` must be answered by a `tool_result` in the next turn, those `tool_result` blocks
  must come first in that turn, and every `tool_result` must answer a `tool_use` of the previous
  turn -> 400;
- with thinking on, the assistant turn whose tool calls the last turn answers must start with a
  `thinking` or `redacted_thinking` block -> 400.
"""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime
from typing import Any

import orjson

from shared.mock.core import (
    HOLE,
    SSE_HEADERS,
    Dialect,
    Headers,
    MockError,
    Request,
    Stream,
    Template,
    openai_limit_headers,
)
from shared.mock.limits import Admission
from shared.mock.openai import MODELS
from shared.mock.settings import MockSettings
from shared.mock.text import Conversation, Plan, json_chars, media_chars, response_id, stable_id

_TOP_LEVEL = frozenset(
    (
        "model", "messages", "max_tokens", "system", "metadata", "stop_sequences", "stream",
        "temperature", "top_p", "top_k", "tools", "tool_choice", "thinking", "service_tier",
        "container", "mcp_servers", "output_config", "context_management", "inference_geo",
    )
)  # fmt: skip

_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}


def _invalid(message: str) -> MockError:
    return MockError(400, message)


class _Turn:
    __slots__ = ("blocks", "first", "role")

    def __init__(self, role: str, first: int) -> None:
        self.role = role
        self.first = first  # index of the turn's first message, for error messages
        self.blocks: list[tuple[int, int, dict[str, Any]]] = []  # (message index, block index, block)


def _result_text(block: dict[str, Any]) -> str:
    content = block.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(b["text"] for b in content if isinstance(b, dict) and isinstance(b.get("text"), str))
    return ""


def _block_chars(block: dict[str, Any], where: str) -> int:
    kind = block["type"]
    if kind == "text":
        text = block.get("text")
        if not isinstance(text, str):
            raise _invalid(f"{where}.text: Field required")
        if not text:
            raise _invalid("messages: text content blocks must be non-empty")
        return len(text)
    if kind == "thinking":
        return len(str(block.get("thinking", "")))
    if kind == "tool_use":
        for name in ("id", "name"):
            if not isinstance(block.get(name), str):
                raise _invalid(f"{where}.tool_use.{name}: Field required")
        return len(block["name"]) + json_chars(block.get("input", {}))
    if kind == "tool_result":
        if not isinstance(block.get("tool_use_id"), str):
            raise _invalid(f"{where}.tool_result.tool_use_id: Field required")
        return len(_result_text(block))
    if kind in ("image", "document"):
        return _attachment_chars(kind, block.get("source"), f"{where}.{kind}.source")
    return 0  # redacted thinking...


_SOURCES = {"image": {"base64": ("image/jpeg", "image/png", "image/gif", "image/webp"), "url": ()},
            "document": {"base64": ("application/pdf",), "text": ("text/plain",), "url": ()}}


def _attachment_chars(kind: str, source: Any, where: str) -> int:
    """Images and documents as Anthropic checks them: a known source type, an allowed media type,
    data or a URL present."""
    allowed = _SOURCES[kind]
    if not isinstance(source, dict) or source.get("type") not in allowed:
        raise _invalid(f"{where}: Input tag '{source.get('type') if isinstance(source, dict) else None}' found "
                       f"using 'type' does not match any of the expected tags: {', '.join(map(repr, allowed))}")
    if source["type"] == "url":
        if not isinstance(source.get("url"), str) or not source["url"].startswith(("http://", "https://")):
            raise _invalid(f"{where}.url: Input should be a valid URL")
        return 100
    media_types = allowed[source["type"]]
    if source.get("media_type") not in media_types:
        raise _invalid(f"{where}.media_type: Input should be {' or '.join(map(repr, media_types))}")
    data = source.get("data")
    if not isinstance(data, str) or not data:
        raise _invalid(f"{where}.data: Field required")
    return len(data) if source["type"] == "text" else media_chars(data)


def _turns(messages: Any) -> tuple[list[_Turn], int]:
    if messages is None:
        raise _invalid("messages: Field required")
    if not isinstance(messages, list):
        raise _invalid("messages: Input should be a valid list")
    if not messages:
        raise _invalid("messages: at least one message is required")
    turns: list[_Turn] = []
    chars = 0
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise _invalid(f"messages.{i}: Input should be a valid dictionary")
        role = message.get("role")
        if role not in ("user", "assistant"):
            raise _invalid(f"messages.{i}.role: Input should be 'user' or 'assistant'")
        content = message.get("content")
        final_assistant = role == "assistant" and i == len(messages) - 1
        if isinstance(content, str):
            blocks: list[Any] = [{"type": "text", "text": content}] if content else []
        elif isinstance(content, list):
            blocks = content
        else:
            raise _invalid(f"messages.{i}.content: Input should be a valid list")
        if not blocks and not final_assistant:
            raise _invalid(
                f"messages.{i}: all messages must have non-empty content except for the optional final "
                "assistant message"
            )
        if not turns or turns[-1].role != role:
            turns.append(_Turn(role, i))
        for j, block in enumerate(blocks):
            if not isinstance(block, dict) or not isinstance(block.get("type"), str):
                raise _invalid(f"messages.{i}.content.{j}: Input should be a valid dictionary with a 'type'")
            chars += _block_chars(block, f"messages.{i}.content.{j}")
            turns[-1].blocks.append((i, j, block))
    return turns, chars


def _check_pairing(turns: list[_Turn]) -> None:
    uses: list[str] = []  # tool_use ids of the previous (assistant) turn
    for turn in turns:
        if turn.role == "assistant":
            uses = [b["id"] for _, _, b in turn.blocks if b["type"] == "tool_use"]
            continue
        answered: set[str] = set()
        seen_other = False
        for i, j, block in turn.blocks:
            if block["type"] != "tool_result":
                seen_other = True
                continue
            if seen_other and uses:
                raise _invalid(
                    f"messages.{i}.content.{j}: `tool_result` blocks must come first in the user message that "
                    "answers `tool_use` blocks; any text or image goes after all of them."
                )
            if block["tool_use_id"] not in uses:
                raise _invalid(
                    f"messages.{i}.content.{j}: unexpected `tool_use_id` found in `tool_result` blocks: "
                    f"{block['tool_use_id']}. Each `tool_result` block must have a corresponding `tool_use` "
                    "block in the previous message."
                )
            answered.add(block["tool_use_id"])
        _unanswered(uses, answered, turn.first)
        uses = []
    _unanswered(uses, set(), turns[-1].first)


def _check_thinking(turns: list[_Turn], thinking: Any) -> None:
    """With thinking on, the assistant turn whose tool calls are being answered starts with thinking."""
    if not isinstance(thinking, dict) or thinking.get("type") not in ("enabled", "adaptive") or len(turns) < 2:
        return
    last, answered = turns[-2], turns[-1]
    if last.role != "assistant" or not any(b["type"] == "tool_result" for _, _, b in answered.blocks):
        return
    i, j, first = last.blocks[0]
    if first["type"] not in ("thinking", "redacted_thinking"):
        raise _invalid(
            f"messages.{i}.content.{j}.type: Expected `thinking` or `redacted_thinking`, but found "
            f"`{first['type']}`. When `thinking` is enabled, a final `assistant` message must start with a "
            "thinking block (preceding the lastmost set of `tool_use` and `tool_result` blocks)."
        )


def _unanswered(uses: list[str], answered: set[str], index: int) -> None:
    missing = [u for u in uses if u not in answered]
    if missing:
        raise _invalid(
            f"messages.{index}: `tool_use` ids were found without `tool_result` blocks immediately after: "
            f"{', '.join(missing)}. Each `tool_use` block must have a corresponding `tool_result` block in "
            "the next message."
        )


def _system_chars(system: Any) -> int:
    if system is None:
        return 0
    if isinstance(system, str):
        return len(system)
    if isinstance(system, list):
        return sum(len(b["text"]) for b in system if isinstance(b, dict) and isinstance(b.get("text"), str))
    raise _invalid("system: Input should be a valid string or list of text blocks")


def _tools(tools: Any, choice: Any, custom: list[tuple[str, dict[str, Any]]]) -> tuple[
        tuple[str, dict[str, Any]] | None, int]:
    if tools is None:
        return None, 0
    if not isinstance(tools, list):
        raise _invalid("tools: Input should be a valid list")
    chars = 0
    for i, tool in enumerate(tools):
        if not isinstance(tool, dict) or not isinstance(tool.get("name"), str):
            raise _invalid(f"tools.{i}.name: Field required")
        chars += len(tool["name"]) + len(str(tool.get("description") or ""))
        schema = tool.get("input_schema")
        if isinstance(schema, dict):
            custom.append((tool["name"], schema))
            chars += json_chars(schema)
        elif tool.get("type") in (None, "custom"):
            raise _invalid(f"tools.{i}.custom.input_schema: Field required")
    if choice is not None and not isinstance(choice, dict):
        raise _invalid("tool_choice: Input should be a valid dictionary")
    kind = (choice or {}).get("type", "auto")
    if kind not in ("auto", "any", "tool", "none"):
        raise _invalid(f"tool_choice.type: Input should be 'auto', 'any', 'tool' or 'none', got {kind!r}")
    if not custom or kind == "none":
        return None, chars
    if kind == "tool":
        name = (choice or {}).get("name")
        for tool in custom:
            if tool[0] == name:
                return tool, chars
        raise _invalid(f"tool_choice.name: Tool {name!r} not found in tools")
    return custom[0], chars


def _stop_reason(plan: Plan) -> str:
    return "tool_use" if plan.tool is not None else "max_tokens" if plan.truncated else "end_turn"


def _usage(plan: Plan, output_tokens: int) -> dict[str, Any]:
    return {
        "input_tokens": plan.input_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "output_tokens": output_tokens,
    }


_RFC3339: dict[int, bytes] = {}


def _rfc3339(second: int) -> bytes:
    # strftime costs more than the rest of the headers; most requests share the same few seconds.
    text = _RFC3339.get(second)
    if text is None:
        if len(_RFC3339) > 256:
            _RFC3339.clear()
        text = _RFC3339[second] = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%SZ").encode()
    return text


def _event(name: bytes, value: dict[str, Any]) -> bytes:
    return b"event: " + name + b"\ndata: " + orjson.dumps(value) + b"\n\n"


class AnthropicDialect(Dialect):
    request_id_header = b"request-id"

    def authenticate(self, req: Request, settings: MockSettings) -> None:
        key = req.header(b"x-api-key")
        if key is None:
            # anthropic-python >= 2 sends its api_key as `Authorization: Bearer`; the API takes both.
            bearer = req.header(b"authorization")
            key = bearer[7:] if bearer is not None and bearer.startswith("Bearer ") else None
        if key is None:
            raise MockError(401, "x-api-key header is required", kind="authentication")
        if settings.api_key is not None and key != settings.api_key:
            raise MockError(401, "invalid x-api-key", kind="authentication")
        if req.header(b"anthropic-version") is None:
            raise _invalid("anthropic-version: header is required")

    def conversation(self, req: Request, body: dict[str, Any]) -> Conversation:
        for name in body:
            if name not in _TOP_LEVEL:
                raise _invalid(f"{name}: Extra inputs are not permitted")
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise _invalid("model: Field required")
        max_tokens = body.get("max_tokens")
        if max_tokens is None:
            raise _invalid("max_tokens: Field required")
        if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
            raise _invalid("max_tokens: Input should be an integer greater than or equal to 1")
        turns, chars = _turns(body.get("messages"))
        _check_pairing(turns)
        _check_thinking(turns, body.get("thinking"))
        offered: list[tuple[str, dict[str, Any]]] = []
        tool, tool_chars = _tools(body.get("tools"), body.get("tool_choice"), offered)
        last = turns[-1]
        results = [b for _, _, b in last.blocks if b["type"] == "tool_result"]
        user_turns = [t for t in turns if t.role == "user"]
        last_user_text = ""
        if user_turns:
            texts = [b["text"] for _, _, b in user_turns[-1].blocks if b["type"] == "text"]
            last_user_text = "".join(texts)
        return Conversation(
            model=model,
            chars=chars + _system_chars(body.get("system")) + tool_chars,
            max_tokens=max_tokens,
            stream=body.get("stream") is True,
            last="other" if last.role == "assistant" else "tool_result" if results else "user",
            last_user_text=last_user_text,
            tool_result_text=_result_text(results[0]) if results else "",
            tool=tool,
            offered=offered,
        )

    def call_id(self, raw: bytes) -> str:
        return "toolu_" + stable_id(raw, 24)

    def error_body(self, err: MockError) -> bytes:
        kind = _ERROR_TYPES.get(err.status) or ("api_error" if err.status >= 500 else "invalid_request_error")
        return orjson.dumps({"type": "error", "error": {"type": kind, "message": err.message}})

    def limit_headers(self, admission: Admission) -> Headers:
        headers = openai_limit_headers(admission)
        now = time.time()
        for name, state in (("requests", admission.requests), ("tokens", admission.tokens)):
            if state is None:
                continue
            prefix = b"anthropic-ratelimit-" + name.encode()
            headers.append((prefix + b"-limit", str(state.limit).encode()))
            headers.append((prefix + b"-remaining", str(state.remaining).encode()))
            headers.append((prefix + b"-reset", _rfc3339(math.ceil(now + state.reset))))
        return headers

    def _content(self, plan: Plan) -> list[dict[str, Any]]:
        if plan.tool is not None:
            tool = plan.tool
            return [{"type": "tool_use", "id": tool.id, "name": tool.name, "input": tool.arguments}]
        return [{"type": "text", "text": plan.text}] if plan.tokens else []

    def _message(self, plan: Plan, content: list[dict[str, Any]], stop: str | None, output: int) -> dict[str, Any]:
        return {
            "id": response_id("msg_"),
            "type": "message",
            "role": "assistant",
            "model": plan.model,
            "content": content,
            "stop_reason": stop,
            "stop_sequence": None,
            "usage": _usage(plan, output),
        }

    def response(self, plan: Plan) -> bytes:
        return orjson.dumps(self._message(plan, self._content(plan), _stop_reason(plan), plan.output_tokens))

    def stream(self, plan: Plan) -> Stream:
        start = self._message(plan, [], None, min(1, plan.output_tokens))
        head = [_event(b"message_start", {"type": "message_start", "message": start})]
        chunks: list[bytes] = []
        tail: list[bytes] = []
        if plan.tool is not None:
            block: dict[str, Any] = {
                "type": "tool_use",
                "id": plan.tool.id,
                "name": plan.tool.name,
                "input": {},
            }
            delta_type, key, pieces = "input_json_delta", "partial_json", plan.argument_chunks()
        else:
            block = {"type": "text", "text": ""}
            delta_type, key, pieces = "text_delta", "text", plan.text_chunks()
        if pieces:
            head.append(
                _event(
                    b"content_block_start",
                    {"type": "content_block_start", "index": 0, "content_block": block},
                )
            )
            template = Template(
                {"type": "content_block_delta", "index": 0, "delta": {"type": delta_type, key: HOLE}},
                b"event: content_block_delta\ndata: ",
                b"\n\n",
            )
            chunks = [template.fill(piece) for piece in pieces]
            tail.append(_event(b"content_block_stop", {"type": "content_block_stop", "index": 0}))
        head.append(_event(b"ping", {"type": "ping"}))
        delta = {"stop_reason": _stop_reason(plan), "stop_sequence": None}
        usage = _usage(plan, plan.output_tokens)
        tail.append(_event(b"message_delta", {"type": "message_delta", "delta": delta, "usage": usage}))
        tail.append(_event(b"message_stop", {"type": "message_stop"}))
        return Stream(head, chunks, tail, SSE_HEADERS)


def models_body() -> bytes:
    data = [
        {"type": "model", "id": name, "display_name": name, "created_at": "2025-01-01T00:00:00Z"} for name in MODELS
    ]
    return orjson.dumps({"data": data, "has_more": False, "first_id": MODELS[0], "last_id": MODELS[-1]})
