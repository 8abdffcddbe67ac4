"""Gemini generateContent wire structs and wire-level helpers for `gemini.py`.

Here: key normalization, OpenAPI-Schema -> JSON Schema, the request structs (with methods that
turn their small config pieces into internal types), response structs, usage and finish-reason
tables, part builders, and google.rpc.Status errors. The stateful conversions (contents, tool
call ids, streams) live in `gemini.py`.

The wire is camelCase JSON, but Google's proto-JSON parsers also accept snake_case and the
google-genai SDK sends some (`parameters_json_schema`). `normalize_keys` camelCases every key
once, before typed decoding, except inside values that belong to the user: function-call
arguments, function responses, and schemas (whose property names must survive untouched).
"""

from __future__ import annotations

import mimetypes
from typing import Any

import msgspec
import orjson

from shared.errors import GatewayError, invalid
from shared.model import FinishReason, Image, ResponseFormat, Text, Tool, ToolChoice, ToolResult, Usage
from shared.protocols.common import OCTET_STREAM, check_range, split_data_uri
from shared.protocols.errors_http import parse_duration, upstream_error

# Keys whose values are user data or schemas: never rewritten. `response` is both a
# functionResponse payload and a FunctionDeclaration's response schema; both are opaque.
_OPAQUE_KEYS = frozenset({"args", "response", "parameters", "parametersJsonSchema", "responseSchema",
                          "responseJsonSchema", "labels"})


def camel(key: str) -> str:
    """`max_output_tokens` -> `maxOutputTokens`; camelCase and leading-underscore keys unchanged."""
    if "_" not in key or key.startswith("_"):
        return key
    head, *rest = key.split("_")
    return head + "".join(word[:1].upper() + word[1:] for word in rest)


def normalize_keys(value: Any) -> Any:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            name = camel(key) if isinstance(key, str) else key
            out[name] = item if name in _OPAQUE_KEYS else normalize_keys(item)
        return out
    if isinstance(value, list):
        return [normalize_keys(item) for item in value]
    return value


# --- Gemini OpenAPI `Schema` -> JSON Schema --------------------------------------------------

_SCHEMA_KEYWORDS = {  # Schema proto fields that may arrive snake_cased
    "any_of": "anyOf", "max_items": "maxItems", "min_items": "minItems", "max_length": "maxLength",
    "min_length": "minLength", "max_properties": "maxProperties", "min_properties": "minProperties",
    "property_ordering": "propertyOrdering",
}
_INT_KEYWORDS = frozenset({"maxItems", "minItems", "maxLength", "minLength", "maxProperties",
                           "minProperties"})


def openapi_to_json_schema(schema: Any) -> Any:
    """Gemini's OpenAPI-subset Schema (types "OBJECT", `nullable`, int64 counts as strings) ->
    JSON Schema. Property names are never touched; unknown keywords pass through."""
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    nullable = False
    for raw_key, value in schema.items():
        key = _SCHEMA_KEYWORDS.get(str(raw_key), str(raw_key))
        if key == "type" and isinstance(value, str):
            if value.upper() != "TYPE_UNSPECIFIED":
                out["type"] = value.lower()
        elif key == "nullable":
            nullable = bool(value)
        elif key == "propertyOrdering":
            continue  # Gemini-only output hint, meaningless in JSON Schema
        elif key == "example":
            out["examples"] = [value]
        elif key == "properties" and isinstance(value, dict):
            out["properties"] = {name: openapi_to_json_schema(sub) for name, sub in value.items()}
        elif key in ("items", "not", "additionalProperties"):
            out[key] = openapi_to_json_schema(value)
        elif key == "anyOf" and isinstance(value, list):
            out["anyOf"] = [openapi_to_json_schema(sub) for sub in value]
        elif key in _INT_KEYWORDS and isinstance(value, str) and value.isdigit():
            out[key] = int(value)
        else:
            out[key] = value
    if nullable:
        kind = out.get("type")
        if isinstance(kind, str):
            out["type"] = [kind, "null"]
        elif "anyOf" in out:
            out["anyOf"] = [*out["anyOf"], {"type": "null"}]
    return out


# --- wire structs (field names are snake_case here, camelCase on the wire) -------------------


class Blob(msgspec.Struct, rename="camel"):
    mime_type: str
    data: str
    display_name: str | None = None


class FileData(msgspec.Struct, rename="camel"):
    file_uri: str
    mime_type: str | None = None
    display_name: str | None = None


class FunctionCall(msgspec.Struct, rename="camel"):
    name: str
    args: dict[str, Any] | None = None
    id: str | None = None


class FunctionResponse(msgspec.Struct, rename="camel"):
    name: str
    response: Any = None
    id: str | None = None


class WirePart(msgspec.Struct, rename="camel"):
    text: str | None = None
    inline_data: Blob | None = None
    file_data: FileData | None = None
    function_call: FunctionCall | None = None
    function_response: FunctionResponse | None = None
    thought: bool | None = None
    thought_signature: str | None = None
    executable_code: Any = None
    code_execution_result: Any = None


class Content(msgspec.Struct, rename="camel"):
    parts: list[WirePart] = msgspec.field(default_factory=list)
    role: str | None = None

    def texts(self) -> list[Text]:
        return [Text(p.text) for p in self.parts if p.text]


class FunctionDeclaration(msgspec.Struct, rename="camel"):
    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None
    parameters_json_schema: dict[str, Any] | None = None

    def tool(self) -> Tool:
        if self.parameters_json_schema is not None:
            params = self.parameters_json_schema
        elif self.parameters is not None:
            params = openapi_to_json_schema(self.parameters)
        else:
            params = {"type": "object", "properties": {}}
        return Tool(name=self.name, parameters=params, description=self.description)


class WireTool(msgspec.Struct, rename="camel"):
    function_declarations: list[FunctionDeclaration] = msgspec.field(default_factory=list)


class FunctionCallingConfig(msgspec.Struct, rename="camel"):
    mode: str | None = None
    allowed_function_names: list[str] | None = None


class ToolConfig(msgspec.Struct, rename="camel"):
    function_calling_config: FunctionCallingConfig | None = None

    def tool_choice(self) -> ToolChoice | None:
        """ANY with several allowed names cannot be expressed: it becomes plain `required`."""
        fcc = self.function_calling_config
        mode = (fcc.mode or "MODE_UNSPECIFIED").upper() if fcc else "MODE_UNSPECIFIED"
        if mode == "MODE_UNSPECIFIED":
            return None
        if mode in ("AUTO", "VALIDATED"):
            return ToolChoice(mode="auto")
        if mode == "NONE":
            return ToolChoice(mode="none")
        if mode == "ANY":
            names = (fcc.allowed_function_names if fcc else None) or []
            return ToolChoice(mode="tool", name=names[0]) if len(names) == 1 else ToolChoice(mode="required")
        raise invalid(f"Unknown function calling mode '{mode}'.", "toolConfig.functionCallingConfig.mode")


class ThinkingConfig(msgspec.Struct, rename="camel"):
    thinking_budget: int | None = None
    thinking_level: str | None = None
    include_thoughts: bool | None = None

    def effort(self) -> str | None:
        if self.thinking_level and self.thinking_level.upper() != "THINKING_LEVEL_UNSPECIFIED":
            return self.thinking_level.lower()
        budget = self.thinking_budget
        if budget is None or budget < 0:  # -1 is "dynamic": the model's default
            return None
        return next((effort for effort, limit in EFFORT_BUDGET.items() if budget <= limit), "high")


# reasoning_effort <-> thinkingBudget in tokens; a budget maps to the first level that covers it.
EFFORT_BUDGET = {"none": 0, "minimal": 128, "low": 1024, "medium": 8192, "high": 24576}


class GenerationConfig(msgspec.Struct, rename="camel"):
    temperature: float | None = None
    top_p: float | None = None
    top_k: float | None = None  # the SDK types it as float
    max_output_tokens: int | None = None
    stop_sequences: list[str] | None = None
    seed: int | None = None
    candidate_count: int | None = None
    response_mime_type: str | None = None
    response_schema: dict[str, Any] | None = None
    response_json_schema: dict[str, Any] | None = None
    thinking_config: ThinkingConfig | None = None

    def check(self) -> None:
        def bad(message: str, field: str) -> GatewayError:
            return invalid(message, "generationConfig." + field)

        check_range(self.temperature, 0, 2, "temperature", "generationConfig.")
        check_range(self.top_p, 0, 1, "topP", "generationConfig.")
        if self.top_k is not None and self.top_k < 1:
            raise bad("'topK' must be at least 1.", "topK")
        if self.max_output_tokens is not None and self.max_output_tokens < 1:
            raise bad("'maxOutputTokens' must be at least 1.", "maxOutputTokens")
        if self.candidate_count is not None and not 1 <= self.candidate_count <= 8:  # Gemini's own limit
            raise bad("'candidateCount' must be between 1 and 8.", "candidateCount")

    def response_format(self) -> ResponseFormat | None:
        mime = (self.response_mime_type or "").lower()
        if mime not in ("", "text/plain", "application/json"):
            raise GatewayError("unsupported", f"responseMimeType '{mime}' is not supported.",
                               param="generationConfig.responseMimeType")
        schema = self.response_json_schema
        if schema is None and self.response_schema is not None:
            schema = openapi_to_json_schema(self.response_schema)
        if schema is not None:
            return ResponseFormat(type="json_schema", schema=schema)
        return ResponseFormat(type="json_object") if mime == "application/json" else None


class WireRequest(msgspec.Struct, rename="camel"):
    contents: list[Content]
    system_instruction: Content | str | None = None
    tools: list[WireTool] | None = None
    tool_config: ToolConfig | None = None
    generation_config: GenerationConfig | None = None
    cached_content: str | None = None


# --- upstream responses ------------------------------------------------------------------------


class UsageMetadata(msgspec.Struct, rename="camel"):
    prompt_token_count: int = 0
    candidates_token_count: int = 0
    thoughts_token_count: int = 0
    cached_content_token_count: int = 0
    tool_use_prompt_token_count: int = 0
    total_token_count: int = 0

    def usage(self) -> Usage:
        """Tool-use prompt tokens (built-in tools' results) are billed as input, so they count."""
        return Usage(
            input_tokens=self.prompt_token_count + self.tool_use_prompt_token_count,
            output_tokens=self.candidates_token_count + self.thoughts_token_count,
            cached_input_tokens=self.cached_content_token_count,
            reasoning_tokens=self.thoughts_token_count,
        )


def usage_metadata(usage: Usage) -> dict[str, int]:
    out = {
        "promptTokenCount": usage.input_tokens,
        "candidatesTokenCount": max(0, usage.output_tokens - usage.reasoning_tokens),
        "totalTokenCount": usage.total_tokens,
    }
    if usage.cached_input_tokens:
        out["cachedContentTokenCount"] = usage.cached_input_tokens
    if usage.reasoning_tokens:
        out["thoughtsTokenCount"] = usage.reasoning_tokens
    return out


FINISH_OUT = {
    "end_turn": "STOP", "stop_sequence": "STOP", "tool_use": "STOP", "max_tokens": "MAX_TOKENS",
    "content_filter": "SAFETY", "error": "OTHER",
}
FINISH_IN: dict[str, FinishReason] = {
    "STOP": "end_turn", "MAX_TOKENS": "max_tokens",
    **{r: "content_filter" for r in ("SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII",
                                     "LANGUAGE", "IMAGE_SAFETY", "IMAGE_PROHIBITED_CONTENT",
                                     "IMAGE_RECITATION")},
    **{r: "error" for r in ("MALFORMED_FUNCTION_CALL", "UNEXPECTED_TOOL_CALL", "TOO_MANY_TOOL_CALLS")},
}


class Candidate(msgspec.Struct, rename="camel"):
    content: Content | None = None
    finish_reason: str | None = None
    index: int = 0


class PromptFeedback(msgspec.Struct, rename="camel"):
    block_reason: str | None = None
    block_reason_message: str | None = None


class Status(msgspec.Struct):
    code: int = 500
    message: str = ""
    status: str | None = None
    details: list[Any] | None = None


class WireResponse(msgspec.Struct, rename="camel"):
    candidates: list[Candidate] | None = None
    prompt_feedback: PromptFeedback | None = None
    usage_metadata: UsageMetadata | None = None
    model_version: str | None = None
    response_id: str | None = None
    error: Status | None = None


response_decoder = msgspec.json.Decoder(WireResponse)


def status_error(status: Status) -> GatewayError:
    return upstream_error(status.code, status.message, retry_delay(status.details))


# --- wire-shape helpers ------------------------------------------------------------------------


def reject_unsupported(raw: dict[str, Any]) -> None:
    tools = raw.get("tools")
    for i, tool in enumerate(tools if isinstance(tools, list) else []):
        for key in tool if isinstance(tool, dict) else {}:
            if key != "functionDeclarations":
                raise GatewayError("unsupported", f"The built-in tool '{key}' is not supported.",
                                   param=f"tools[{i}].{key}")
    if raw.get("cachedContent"):
        raise GatewayError("unsupported", "'cachedContent' is not supported.", param="cachedContent")


def image_part(image: Image) -> dict[str, Any]:
    if image.data is not None:
        return {"inlineData": {"mimeType": image.media_type or OCTET_STREAM, "data": image.data}}
    url = image.url or ""
    if url.startswith("data:"):
        media_type, data = split_data_uri(url)
        return {"inlineData": {"mimeType": media_type, "data": data}}
    file_data = {"fileUri": url}
    mime = image.media_type or mimetypes.guess_type(url.split("?", 1)[0])[0]
    if mime:
        file_data["mimeType"] = mime
    return {"fileData": file_data}


def response_object(result: ToolResult) -> dict[str, Any]:
    """Gemini wants an object: JSON objects pass as they are, anything else is wrapped."""
    try:
        value: Any = orjson.loads(result.content)
    except orjson.JSONDecodeError:
        value = result.content
    if result.is_error:
        return value if isinstance(value, dict) and "error" in value else {"error": value}
    return value if isinstance(value, dict) else {"result": value}


# --- google.rpc.Status errors ----------------------------------------------------------------

_STATUS_NAMES = {
    400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
    408: "DEADLINE_EXCEEDED", 409: "ABORTED", 429: "RESOURCE_EXHAUSTED", 499: "CANCELLED", 500: "INTERNAL",
    501: "UNIMPLEMENTED", 503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED",
}
_RETRY_INFO = "type.googleapis.com/google.rpc.RetryInfo"


def _seconds(value: float) -> str:
    return f"{max(0.0, value):.3f}".rstrip("0").rstrip(".") + "s"


def error_body(err: GatewayError) -> dict[str, Any]:
    status = _STATUS_NAMES.get(err.status) or ("INVALID_ARGUMENT" if err.status < 500 else "INTERNAL")
    body: dict[str, Any] = {"code": err.status, "message": err.message, "status": status}
    details: list[dict[str, Any]] = []
    if err.status == 429 and err.retry_after is not None:
        details.append({"@type": _RETRY_INFO, "retryDelay": _seconds(err.retry_after)})
    if err.param:
        details.append({"@type": "type.googleapis.com/google.rpc.BadRequest",
                        "fieldViolations": [{"field": err.param, "description": err.message}]})
    if details:
        body["details"] = details
    return {"error": body}


def retry_delay(details: Any) -> float | None:
    """Seconds from a RetryInfo detail: "37s", "1.5s", or a proto Duration object."""
    for detail in details if isinstance(details, list) else []:
        if isinstance(detail, dict) and detail.get("@type") == _RETRY_INFO:
            delay = detail.get("retryDelay")
            if isinstance(delay, str):
                return parse_duration(delay)
            if isinstance(delay, dict):
                return float(delay.get("seconds", 0)) + float(delay.get("nanos", 0)) / 1e9
    return None


def bad_api_key(details: Any) -> bool:
    """Google answers an invalid key with 400 INVALID_ARGUMENT and ErrorInfo reason API_KEY_INVALID."""
    return any(isinstance(d, dict) and str(d.get("reason", "")).startswith("API_KEY_")
               for d in (details if isinstance(details, list) else []))
