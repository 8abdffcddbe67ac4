"""Mistral: `POST /mistral/v1/chat/completions` (an account with base_url `http://host:port/mistral/v1`).

OpenAI-shaped, but strict like the real API:
- 422 `extra_forbidden` for unknown top-level fields, unknown message fields (e.g. `name` on a
  non-tool message, `reasoning_content`) and unknown tool-call fields;
- 400 (code 3280) when a tool-call id is not exactly 9 characters of [a-zA-Z0-9];
- 400 (code 3230) for a `user` message right after a `tool` message, and for a last message that
  is neither user nor tool (an assistant with `prefix: true` is allowed).
Its own tool-call ids are 9 alphanumerics; streams carry usage on the finish chunk and end in [DONE].
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from shared.mock.core import MockError, Request
from shared.mock.openai import OpenAIDialect, read_chat
from shared.mock.text import Conversation, Plan, stable_id

_TOP_LEVEL = frozenset(
    (
        "model", "messages", "temperature", "top_p", "max_tokens", "stream", "stop", "random_seed",
        "response_format", "tools", "tool_choice", "presence_penalty", "frequency_penalty", "n",
        "parallel_tool_calls", "prompt_mode", "safe_prompt",
    )
)  # fmt: skip

_MESSAGE_FIELDS = {
    "system": frozenset(("role", "content")),
    "user": frozenset(("role", "content")),
    "assistant": frozenset(("role", "content", "tool_calls", "prefix")),
    "tool": frozenset(("role", "content", "tool_call_id", "name")),
}
_CHUNK_TYPES = frozenset(("text", "image_url", "document_url", "reference", "input_audio", "thinking"))
_TOOL_CALL_FIELDS = frozenset(("id", "type", "function", "index"))
_FUNCTION_FIELDS = frozenset(("name", "arguments"))
_ID = re.compile(r"[a-zA-Z0-9]{9}")


def _extra(loc: list[Any]) -> dict[str, Any]:
    return {"type": "extra_forbidden", "loc": ["body", *loc], "msg": "Extra inputs are not permitted"}


def _unprocessable(detail: list[dict[str, Any]]) -> MockError:
    body = {
        "object": "error",
        "message": {"detail": detail},
        "type": "invalid_request_error",
        "param": None,
        "code": None,
    }
    return MockError(422, "Unprocessable entity", body=orjson.dumps(body))


def _schema_errors(body: dict[str, Any]) -> list[dict[str, Any]]:
    detail = [_extra([name]) for name in body if name not in _TOP_LEVEL]
    messages = body.get("messages")
    for i, message in enumerate(messages if isinstance(messages, list) else ()):
        if not isinstance(message, dict):
            continue
        role = message.get("role")
        allowed = _MESSAGE_FIELDS.get(role) if isinstance(role, str) else None
        if allowed is None:
            detail.append(
                {
                    "type": "union_tag_invalid",
                    "loc": ["body", "messages", i],
                    "msg": f"Input tag '{role}' found using 'role' does not match any of the expected tags: "
                    "'system', 'user', 'assistant', 'tool'",
                }
            )
            continue
        detail += [_extra(["messages", i, role, name]) for name in message if name not in allowed]
        content = message.get("content")
        for j, part in enumerate(content if isinstance(content, list) else ()):
            kind = part.get("type") if isinstance(part, dict) else None
            if kind not in _CHUNK_TYPES:
                detail.append({"type": "union_tag_invalid", "loc": ["body", "messages", i, role, "content", j],
                               "msg": f"Input tag '{kind}' found using 'type' does not match any of the expected "
                               f"tags: {', '.join(map(repr, sorted(_CHUNK_TYPES)))}"})
        calls = message.get("tool_calls")
        for k, call in enumerate(calls if isinstance(calls, list) else ()):
            if not isinstance(call, dict):
                continue
            loc: list[Any] = ["messages", i, role, "tool_calls", k]
            detail += [_extra([*loc, name]) for name in call if name not in _TOOL_CALL_FIELDS]
            function = call.get("function")
            if isinstance(function, dict):
                detail += [_extra([*loc, "function", name]) for name in function if name not in _FUNCTION_FIELDS]
    return detail


def _check_ids_and_order(messages: list[Any]) -> None:
    previous = None
    for message in messages:
        role = message["role"]
        ids = [message.get("tool_call_id")] if role == "tool" else []
        calls = message.get("tool_calls") if role == "assistant" else None
        ids += [c.get("id") for c in calls if isinstance(c, dict)] if isinstance(calls, list) else []
        for call_id in ids:
            if not isinstance(call_id, str) or not _ID.fullmatch(call_id):
                raise MockError(
                    400,
                    f"Tool call id was {call_id} but must be a-z, A-Z, 0-9, with a length of 9.",
                    code="3280",
                )
        if role == "user" and previous == "tool":
            raise MockError(400, "Unexpected role 'user' after role 'tool'", kind="order", code="3230")
        previous = role
    last = messages[-1]
    if last["role"] not in ("user", "tool") and not (last["role"] == "assistant" and last.get("prefix") is True):
        raise MockError(
            400,
            f"Expected last role User or Tool (or Assistant with prefix True) for serving but got {last['role']}",
            kind="order",
            code="3230",
        )


class MistralDialect(OpenAIDialect):
    request_id_header = None
    id_prefix = "cmpl-"
    usage_in_last_chunk = True

    def conversation(self, req: Request, body: dict[str, Any]) -> Conversation:
        detail = _schema_errors(body)
        if detail:
            raise _unprocessable(detail)
        messages = body.get("messages")
        if isinstance(messages, list) and messages and all(isinstance(m, dict) for m in messages):
            _check_ids_and_order(messages)
        conv = read_chat(body, forced_choices=("any", "required"))
        conv.include_usage = False  # no stream_options here; usage rides on the finish chunk
        return conv

    def call_id(self, raw: bytes) -> str:
        return stable_id(raw, 9)

    def error_body(self, err: MockError) -> bytes:
        if err.status == 401:
            return orjson.dumps({"message": "Unauthorized", "request_id": "mock"})
        if err.status == 429:
            kind, code = "rate_limited", "1300"
        elif err.status >= 500:
            kind, code = "internal_server_error", None
        else:
            kind = "invalid_request_message_order" if err.kind == "order" else "invalid_request_error"
            code = err.code
        return orjson.dumps({"object": "error", "message": err.message, "type": kind, "param": err.param, "code": code})

    def usage(self, plan: Plan) -> dict[str, Any]:
        total = plan.input_tokens + plan.output_tokens
        return {
            "prompt_tokens": plan.input_tokens,
            "completion_tokens": plan.output_tokens,
            "total_tokens": total,
        }

    def message(self, plan: Plan) -> dict[str, Any]:
        message = super().message(plan)
        del message["refusal"]
        return message

    def first_delta(self) -> dict[str, Any]:
        return {"role": "assistant", "content": ""}
