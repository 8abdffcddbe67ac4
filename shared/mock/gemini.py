"""Gemini: `POST /v1beta/models/{model}:generateContent` and `:streamGenerateContent` (also under /v1).

Streams are `data: {GenerateContentResponse}` frames with `?alt=sse` (no terminator), or one JSON
array without it. A function call arrives whole in one chunk, without an `id` (as the real API
usually sends it). Auth is `x-goog-api-key` or `?key=`. Strict where the real API is:
- unknown top-level fields, roles other than user/model, empty `contents` or `parts` -> 400;
- a model turn with N functionCall parts must follow a user turn and be followed by a user turn
  with exactly N functionResponse parts, and functionResponse.response must be an object -> 400.
Errors are `{"error": {"code", "message", "status"}}`; a 429 carries a RetryInfo detail and no
rate-limit or retry-after headers.
"""

from __future__ import annotations

import math
from typing import Any

import orjson

from shared.mock.core import (
    HOLE,
    JSON_TYPE,
    SSE_HEADERS,
    Dialect,
    Headers,
    MockError,
    Request,
    Stream,
    Template,
)
from shared.mock.limits import Admission
from shared.mock.openai import MODELS
from shared.mock.settings import MockSettings
from shared.mock.text import Conversation, Plan, json_chars, media_chars, response_id

METHODS = ("generateContent", "streamGenerateContent")

_TOP_LEVEL = frozenset(
    (
        "contents", "systemInstruction", "system_instruction", "tools", "toolConfig", "tool_config",
        "generationConfig", "generation_config", "safetySettings", "safety_settings",
        "cachedContent", "cached_content", "labels", "model",
    )
)  # fmt: skip

_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "NOT_IMPLEMENTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}

_CALL_AFTER_USER = (
    "Please ensure that function call turn comes immediately after a user turn or after a function response turn."
)
_COUNTS_MATCH = (
    "Please ensure that the number of function response parts is equal to the number of function call parts "
    "of the function call turn."
)


def split_path(path: str) -> tuple[str, str] | None:
    """(model, method) of `/v1beta/models/{model}:{method}` or `/v1/models/...`; None otherwise."""
    for prefix in ("/v1beta/models/", "/v1/models/"):
        if path.startswith(prefix):
            model, sep, method = path[len(prefix) :].rpartition(":")
            return (model, method) if sep and model else None
    return None


def _invalid(message: str) -> MockError:
    return MockError(400, message)


def _get(value: dict[str, Any], camel: str, snake: str) -> Any:
    # The API takes proto JSON, which accepts both spellings.
    return value[camel] if camel in value else value.get(snake)


def _texts(content: Any) -> str:
    parts = content.get("parts") if isinstance(content, dict) else None
    if not isinstance(parts, list):
        return ""
    return "".join(p["text"] for p in parts if isinstance(p, dict) and isinstance(p.get("text"), str))


def _attachment_chars(part: dict[str, Any], where: str) -> int:
    """inlineData needs a mimeType and data, fileData a fileUri, as Gemini checks them."""
    inline = _get(part, "inlineData", "inline_data")
    if isinstance(inline, dict):
        data = inline.get("data")
        if not _get(inline, "mimeType", "mime_type") or not isinstance(data, str) or not data:
            raise _invalid(f"* GenerateContentRequest.{where}.inline_data: mime_type and data are required")
        return media_chars(data)
    file_data = _get(part, "fileData", "file_data")
    if isinstance(file_data, dict):
        if not isinstance(_get(file_data, "fileUri", "file_uri"), str):
            raise _invalid(f"* GenerateContentRequest.{where}.file_data.file_uri: file_uri is required")
        return 100
    return 0


class _Turns:
    """Walks `contents` once: counts characters and function parts, finds the last user text."""

    def __init__(self, contents: Any) -> None:
        if not isinstance(contents, list) or not contents:
            raise _invalid("* GenerateContentRequest.contents: contents is not specified")
        self.chars = 0
        self.roles: list[str] = []
        self.calls: list[int] = []
        self.responses: list[dict[str, Any]] = []  # of the last content only
        self.last_user_text = ""
        for i, content in enumerate(contents):
            self._content(i, content)
        if self.calls[-1]:
            raise _invalid(_COUNTS_MATCH)  # a function call turn must be answered

    def _content(self, i: int, content: Any) -> None:
        if not isinstance(content, dict):
            raise _invalid(f"Invalid JSON payload received. Invalid value at 'contents[{i}]'.")
        role = content.get("role") or "user"
        if role not in ("user", "model"):
            raise _invalid("Please use a valid role: user, model.")
        parts = content.get("parts")
        if not isinstance(parts, list) or not parts:
            raise _invalid(f"* GenerateContentRequest.contents[{i}].parts: contents.parts must not be empty.")
        calls = 0
        responses: list[dict[str, Any]] = []
        text = ""
        for j, part in enumerate(parts):
            if not isinstance(part, dict):
                raise _invalid(f"Invalid JSON payload received. Invalid value at 'contents[{i}].parts[{j}]'.")
            if isinstance(part.get("text"), str):
                text += part["text"]
            self.chars += _attachment_chars(part, f"contents[{i}].parts[{j}]")
            call = _get(part, "functionCall", "function_call")
            if isinstance(call, dict):
                calls += 1
                self.chars += len(str(call.get("name", ""))) + json_chars(call.get("args", {}))
            response = _get(part, "functionResponse", "function_response")
            if isinstance(response, dict):
                body = response.get("response")
                if not isinstance(body, dict):
                    raise _invalid(
                        f"Invalid value at 'contents[{i}].parts[{j}].function_response.response' "
                        f"(type.googleapis.com/google.protobuf.Struct), {orjson.dumps(body).decode()}"
                    )
                responses.append(response)
                self.chars += len(str(response.get("name", ""))) + json_chars(body)
        self.chars += len(text)
        if role == "user" and text:
            self.last_user_text = text
        if responses and (not self.calls or self.calls[-1] != len(responses) or role != "user"):
            raise _invalid(_COUNTS_MATCH)
        if self.calls and self.calls[-1] and len(responses) != self.calls[-1]:
            raise _invalid(_COUNTS_MATCH)
        if calls and (role != "model" or not self.roles or self.roles[-1] != "user"):
            raise _invalid(_CALL_AFTER_USER)
        self.roles.append(role)
        self.calls.append(calls)
        self.responses = responses


def _tool(tools: Any, config: Any, declarations: list[tuple[str, dict[str, Any]]]) -> tuple[
        tuple[str, dict[str, Any]] | None, int]:
    chars = 0
    for tool in tools if isinstance(tools, list) else ():
        found = _get(tool, "functionDeclarations", "function_declarations") if isinstance(tool, dict) else None
        for declaration in found if isinstance(found, list) else ():
            if not isinstance(declaration, dict) or not isinstance(declaration.get("name"), str):
                raise _invalid("* GenerateContentRequest.tools[0].function_declarations: name is required")
            schema = _get(declaration, "parametersJsonSchema", "parameters_json_schema")
            if not isinstance(schema, dict):
                schema = declaration.get("parameters")
            schema = schema if isinstance(schema, dict) else {}
            declarations.append((declaration["name"], schema))
            chars += len(declaration["name"]) + len(str(declaration.get("description") or "")) + json_chars(schema)
    calling = _get(config, "functionCallingConfig", "function_calling_config") if isinstance(config, dict) else None
    calling = calling if isinstance(calling, dict) else {}
    if not declarations or calling.get("mode") == "NONE":
        return None, chars
    allowed = _get(calling, "allowedFunctionNames", "allowed_function_names")
    if isinstance(allowed, list) and allowed:
        for declaration in declarations:
            if declaration[0] in allowed:
                return declaration, chars
    return declarations[0], chars


def _max_tokens(config: Any) -> int | None:
    if not isinstance(config, dict):
        return None
    value = _get(config, "maxOutputTokens", "max_output_tokens")
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise _invalid("* GenerateContentRequest.generation_config.max_output_tokens: must be a positive integer")
    return value


class GeminiDialect(Dialect):
    retry_headers = False  # the hint lives in the body's RetryInfo

    def authenticate(self, req: Request, settings: MockSettings) -> None:
        if settings.api_key is None:
            return
        key = req.header(b"x-goog-api-key") or req.query("key")
        if key != settings.api_key:
            raise MockError(401, "API key not valid. Please pass a valid API key.", kind="authentication")

    def conversation(self, req: Request, body: dict[str, Any]) -> Conversation:
        model, method = split_path(req.path) or ("", "")
        for name in body:
            if name not in _TOP_LEVEL:
                raise _invalid(f'Invalid JSON payload received. Unknown name "{name}": Cannot find field.')
        turns = _Turns(body.get("contents"))
        offered: list[tuple[str, dict[str, Any]]] = []
        tool, tool_chars = _tool(body.get("tools"), _get(body, "toolConfig", "tool_config"), offered)
        results = turns.responses
        system_chars = len(_texts(_get(body, "systemInstruction", "system_instruction")))
        return Conversation(
            model=model,
            chars=turns.chars + tool_chars + system_chars,
            max_tokens=_max_tokens(_get(body, "generationConfig", "generation_config")),
            stream=method == "streamGenerateContent",
            last="other" if turns.roles[-1] == "model" else "tool_result" if results else "user",
            last_user_text=turns.last_user_text,
            tool_result_text=orjson.dumps(results[0]["response"]).decode() if results else "",
            tool=tool,
            offered=offered,
        )

    def call_id(self, raw: bytes) -> str:
        return ""  # Gemini function calls carry no id

    def error_body(self, err: MockError) -> bytes:
        status = _STATUS.get(err.status) or ("INTERNAL" if err.status >= 500 else "FAILED_PRECONDITION")
        error: dict[str, Any] = {"code": err.status, "message": err.message, "status": status}
        if err.retry_after is not None:
            delay = f"{max(1, math.ceil(err.retry_after))}s"
            error["details"] = [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": delay}]
        return orjson.dumps({"error": error})

    def limit_headers(self, admission: Admission) -> Headers:
        return []

    def _chunk(self, plan: Plan, rid: str, parts: list[dict[str, Any]], done: bool, output: int) -> dict[str, Any]:
        candidate: dict[str, Any] = {"content": {"role": "model", "parts": parts}, "index": 0}
        if done:
            candidate["finishReason"] = "MAX_TOKENS" if plan.truncated else "STOP"
        usage = {
            "promptTokenCount": plan.input_tokens,
            "candidatesTokenCount": output,
            "totalTokenCount": plan.input_tokens + output,
            "cachedContentTokenCount": 0,
            "thoughtsTokenCount": 0,
        }
        return {
            "candidates": [candidate],
            "usageMetadata": usage,
            "modelVersion": plan.model,
            "responseId": rid,
        }

    def _call_part(self, plan: Plan) -> dict[str, Any]:
        assert plan.tool is not None
        return {"functionCall": {"name": plan.tool.name, "args": plan.tool.arguments}}

    def response(self, plan: Plan) -> bytes:
        part = self._call_part(plan) if plan.tool is not None else {"text": plan.text}
        return orjson.dumps(self._chunk(plan, response_id(""), [part], True, plan.output_tokens))

    sse = True

    def stream(self, plan: Plan) -> Stream:
        rid = response_id("")
        docs: list[bytes] = []
        if plan.tool is not None:
            last_parts = [self._call_part(plan)]
        else:
            pieces = plan.text_chunks() or [""]
            last_parts = [{"text": pieces.pop()}]
            if pieces:
                # Every chunk but the last: incremental text and the usage so far.
                envelope = self._chunk(plan, rid, [{"text": HOLE}], False, 0)
                envelope["usageMetadata"].update(candidatesTokenCount=HOLE, totalTokenCount=HOLE)
                template = Template(envelope)
                for n, piece in enumerate(pieces, 1):
                    sent = n * plan.chunk_tokens
                    docs.append(template.fill(piece, sent, plan.input_tokens + sent))
        docs.append(orjson.dumps(self._chunk(plan, rid, last_parts, True, plan.output_tokens)))
        if self.sse:
            return Stream([], [b"data: " + d + b"\r\n\r\n" for d in docs], [], SSE_HEADERS)
        return Stream([b"["], [docs[0], *(b"," + d for d in docs[1:])], [b"]"], [JSON_TYPE])


class GeminiArrayDialect(GeminiDialect):
    """`:streamGenerateContent` without `?alt=sse`: the chunks as one JSON array."""

    sse = False


def models_body() -> bytes:
    models = [
        {
            "name": f"models/{name}",
            "version": "001",
            "displayName": name,
            "inputTokenLimit": 1048576,
            "outputTokenLimit": 65536,
            "supportedGenerationMethods": list(METHODS),
        }
        for name in MODELS
    ]
    return orjson.dumps({"models": models})
