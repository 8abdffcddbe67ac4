"""OpenAI Chat Completions: `POST /v1/chat/completions` and `GET /v1/models`.

Lenient about unknown fields like the real API, but it does enforce tool-call pairing: every
assistant `tool_calls` id must be answered by a `tool` message before the next other message,
and a `tool` message must answer a pending id. Mistral (mistral.py) reuses the reading and the
rendering here with its own stricter checks on top.
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from shared.mock.core import HOLE, SSE_HEADERS, Dialect, MockError, Request, Stream, Template, bearer_auth
from shared.mock.settings import MockSettings
from shared.mock.text import Conversation, Plan, json_chars, media_chars, response_id, stable_id

MODELS = ("mock-gpt", "mock-claude", "mock-gemini", "mock-mistral")
_ROLES = frozenset(("system", "developer", "user", "assistant", "tool", "function"))
_FINGERPRINT = "fp_mock"


def text_of(content: Any) -> str:
    """A message's text: a string, or the `text` of its parts (images and audio count nothing)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


def _invalid(message: str, param: str | None = None) -> MockError:
    return MockError(400, message, param=param)


def read_chat(body: dict[str, Any], *, forced_choices: tuple[str, ...] = ("required",)) -> Conversation:
    """The Conversation of a Chat Completions body; raises MockError(400) like the real API."""
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise _invalid("you must provide a model parameter", "model")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _invalid("'messages' must contain at least one message.", "messages")
    chars = 0
    last_user_text = ""
    pending: list[str] = []  # tool-call ids still waiting for their tool message
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise _invalid(f"Invalid type for 'messages[{i}]': expected an object.", f"messages[{i}]")
        role = message.get("role")
        if role not in _ROLES:
            raise _invalid(
                f"Invalid value: '{role}'. Supported values are: 'system', 'assistant', 'user', "
                "'function', 'tool', and 'developer'.",
                f"messages[{i}].role",
            )
        text = text_of(message.get("content"))
        chars += len(text) + _attachment_chars(message.get("content"), i)
        if role == "tool":
            call_id = message.get("tool_call_id")
            if call_id not in pending:
                raise _invalid(
                    "Invalid parameter: messages with role 'tool' must be a response to a preceding "
                    "message with 'tool_calls'.",
                    f"messages.[{i}].role",
                )
            pending.remove(call_id)
            continue
        if pending:
            raise _invalid(_unanswered(pending), f"messages.[{i}].role")
        if role == "user":
            last_user_text = text
        elif role == "assistant":
            reasoning = message.get("reasoning_content")
            chars += len(reasoning) if isinstance(reasoning, str) else 0
            calls = message.get("tool_calls")
            for call in calls if isinstance(calls, list) else ():
                function = call.get("function") if isinstance(call, dict) else None
                if not isinstance(function, dict):
                    raise _invalid("Invalid tool call: expected an object with a 'function'.")
                chars += len(str(function.get("name", ""))) + len(str(function.get("arguments", "")))
                pending.append(call.get("id"))
    if pending:
        raise _invalid(_unanswered(pending), "messages")
    last = messages[-1]
    last_role = last["role"]
    tools, tool_chars = read_tools(body.get("tools"))
    return Conversation(
        model=model,
        chars=chars + tool_chars,
        max_tokens=_max_tokens(body),
        stream=body.get("stream") is True,
        last="user" if last_role == "user" else "tool_result" if last_role in ("tool", "function") else "other",
        last_user_text=last_user_text,
        tool_result_text=text_of(last.get("content")),
        tool=choose_tool(tools, body.get("tool_choice"), forced_choices),
        include_usage=_include_usage(body),
        offered=tools,
    )


def _attachment_chars(content: Any, i: int) -> int:
    """Image and file parts as OpenAI checks them: a file needs a PDF data URI or a file id."""
    chars = 0
    for j, part in enumerate(content if isinstance(content, list) else ()):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "image_url":
            url = (part.get("image_url") or {}).get("url")
            chars += media_chars(url) if isinstance(url, str) else 0
        elif kind == "file":
            file = part.get("file") if isinstance(part.get("file"), dict) else {}
            data = file.get("file_data")
            if isinstance(data, str) and data.startswith("data:application/pdf;base64,") and len(data) > 28:
                chars += media_chars(data)
            elif not isinstance(file.get("file_id"), str):
                raise _invalid("Invalid file data: expected a base64 PDF data URI ('data:application/pdf;base64,"
                               "...') or a 'file_id'.", f"messages[{i}].content[{j}].file.file_data")
    return chars


def _unanswered(ids: list[str]) -> str:
    return (
        "An assistant message with 'tool_calls' must be followed by tool messages responding to each "
        "'tool_call_id'. The following tool_call_ids did not have response messages: " + ", ".join(map(str, ids))
    )


def _max_tokens(body: dict[str, Any]) -> int | None:
    for name in ("max_completion_tokens", "max_tokens"):
        value = body.get(name)
        if value is None:
            continue
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise _invalid(f"Invalid '{name}': expected an integer of at least 1.", name)
        return value
    return None


def _include_usage(body: dict[str, Any]) -> bool:
    options = body.get("stream_options")
    return isinstance(options, dict) and options.get("include_usage") is True


def read_tools(tools: Any) -> tuple[list[tuple[str, dict[str, Any]]], int]:
    """(name, parameters schema) of each function tool, and the characters of all definitions."""
    found: list[tuple[str, dict[str, Any]]] = []
    chars = 0
    if not isinstance(tools, list):
        return found, 0
    for tool in tools:
        function = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise _invalid("Invalid tool: expected {'type': 'function', 'function': {'name': ...}}.", "tools")
        parameters = function.get("parameters")
        schema = parameters if isinstance(parameters, dict) else {}
        found.append((function["name"], schema))
        chars += len(function["name"]) + len(str(function.get("description") or "")) + json_chars(schema)
    return found, chars


def choose_tool(
    tools: list[tuple[str, dict[str, Any]]], choice: Any, forced: tuple[str, ...]
) -> tuple[str, dict[str, Any]] | None:
    if not tools or choice == "none":
        return None
    if isinstance(choice, dict):
        function = choice.get("function")
        name = function.get("name") if isinstance(function, dict) else None
        for tool in tools:
            if tool[0] == name:
                return tool
        raise _invalid(f"Invalid value for 'tool_choice': no function named {name!r} in 'tools'.", "tool_choice")
    if choice is not None and choice != "auto" and choice not in forced:
        raise _invalid(f"Invalid value for 'tool_choice': {choice!r}.", "tool_choice")
    return tools[0]


def finish_reason(plan: Plan) -> str:
    return "tool_calls" if plan.tool is not None else "length" if plan.truncated else "stop"


def tool_call(plan: Plan) -> dict[str, Any]:
    assert plan.tool is not None
    return {
        "id": plan.tool.id,
        "type": "function",
        "function": {"name": plan.tool.name, "arguments": plan.tool.arguments_json},
    }


def sse(value: Any) -> bytes:
    return b"data: " + orjson.dumps(value) + b"\n\n"


DONE = b"data: [DONE]\n\n"


class OpenAIDialect(Dialect):
    request_id_header: bytes | None = b"x-request-id"
    id_prefix = "chatcmpl-"
    usage_in_last_chunk = False  # Mistral always puts usage on the finish chunk instead

    def authenticate(self, req: Request, settings: MockSettings) -> None:
        bearer_auth(req, settings)

    def conversation(self, req: Request, body: dict[str, Any]) -> Conversation:
        return read_chat(body)

    def call_id(self, raw: bytes) -> str:
        return "call_" + stable_id(raw, 24)

    def error_body(self, err: MockError) -> bytes:
        if err.status >= 500:
            kind = "server_error"
        elif err.status == 429:
            kind = err.kind if err.kind in ("requests", "tokens") else "requests"
        else:
            kind = "invalid_request_error"
        error = {"message": err.message, "type": kind, "param": err.param, "code": err.code}
        return orjson.dumps({"error": error})

    def usage(self, plan: Plan) -> dict[str, Any]:
        return {
            "prompt_tokens": plan.input_tokens,
            "completion_tokens": plan.output_tokens,
            "total_tokens": plan.input_tokens + plan.output_tokens,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": 0,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        }

    def message(self, plan: Plan) -> dict[str, Any]:
        if plan.tool is not None:
            return {"role": "assistant", "content": None, "refusal": None, "tool_calls": [tool_call(plan)]}
        return {"role": "assistant", "content": plan.text, "refusal": None}

    def first_delta(self) -> dict[str, Any]:
        return {"role": "assistant", "content": "", "refusal": None}

    def response(self, plan: Plan) -> bytes:
        return orjson.dumps(
            {
                "id": response_id(self.id_prefix),
                "object": "chat.completion",
                "created": int(time.time()),
                "model": plan.model,
                "system_fingerprint": _FINGERPRINT,
                "choices": [
                    {
                        "index": 0,
                        "message": self.message(plan),
                        "logprobs": None,
                        "finish_reason": finish_reason(plan),
                    }
                ],
                "usage": self.usage(plan),
            }
        )

    def stream(self, plan: Plan) -> Stream:
        base: dict[str, Any] = {
            "id": response_id(self.id_prefix),
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": plan.model,
            "system_fingerprint": _FINGERPRINT,
        }
        if plan.include_usage:
            base["usage"] = None  # every chunk but the last says so when usage was asked for

        def envelope(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
            return {
                **base,
                "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
            }

        def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
            return sse(envelope(delta, finish))

        if plan.tool is not None:
            call = tool_call(plan)
            call["index"] = 0
            call["function"] = {"name": plan.tool.name, "arguments": ""}
            head = [chunk({"role": "assistant", "content": None, "tool_calls": [call]})]
            fragment = Template(
                envelope({"tool_calls": [{"index": 0, "function": {"arguments": HOLE}}]}), b"data: ", b"\n\n"
            )
            chunks = [fragment.fill(part) for part in plan.argument_chunks()]
        else:
            head = [chunk(self.first_delta())]
            text = Template(envelope({"content": HOLE}), b"data: ", b"\n\n")
            chunks = [text.fill(piece) for piece in plan.text_chunks()]
        if self.usage_in_last_chunk:
            choice = {"index": 0, "delta": {}, "logprobs": None, "finish_reason": finish_reason(plan)}
            tail = [sse({**base, "choices": [choice], "usage": self.usage(plan)})]
        else:
            tail = [chunk({}, finish_reason(plan))]
        if plan.include_usage:
            tail.append(sse({**base, "choices": [], "usage": self.usage(plan)}))
        tail.append(DONE)
        return Stream(head, chunks, tail, SSE_HEADERS)


def models_body() -> bytes:
    data = [{"id": name, "object": "model", "created": 0, "owned_by": "sluice-mock"} for name in MODELS]
    return orjson.dumps({"object": "list", "data": data})
