"""Request-body schemas of the inference routes, for the OpenAPI document only.

The handlers read raw bodies (api/fastpath.py) and each dialect module is the real contract;
these loose schemas say what a body looks like, so clients and fuzzers (the schemathesis run in
tests/api/test_openapi_fuzz.py) can build one. Unknown fields are allowed, as the providers allow them.
"""

from __future__ import annotations

from typing import Any

_TEXT = {"type": "string", "maxLength": 200}
_TOKENS = {"type": "integer", "minimum": 1, "maximum": 4096}


def _body(required: list[str], properties: dict[str, Any]) -> dict[str, Any]:
    schema = {"type": "object", "required": required, "properties": properties}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


def _messages(roles: list[str], content: dict[str, Any]) -> dict[str, Any]:
    return {"type": "array", "minItems": 1, "maxItems": 4, "items": {
        "type": "object", "required": ["role", "content"],
        "properties": {"role": {"enum": roles}, "content": content}}}


_PARTS = {"type": "array", "maxItems": 3, "items": {"type": "object", "required": ["type", "text"],
                                                    "properties": {"type": {"enum": ["text"]}, "text": _TEXT}}}

OPENAI_CHAT = _body(["model", "messages"], {
    "model": {"type": "string"},
    "messages": _messages(["system", "user", "assistant"], {"anyOf": [_TEXT, _PARTS]}),
    "max_tokens": _TOKENS, "stream": {"type": "boolean"}, "temperature": {"type": "number"},
    "n": {"type": "integer"}, "stop": {"anyOf": [_TEXT, {"type": "array", "items": _TEXT}]}})

OPENAI_RESPONSES = _body(["model", "input"], {
    "model": {"type": "string"},
    "input": {"anyOf": [_TEXT, _messages(["user", "assistant", "developer"], {"anyOf": [_TEXT]})]},
    "instructions": _TEXT, "max_output_tokens": _TOKENS, "stream": {"type": "boolean"}})

ANTHROPIC_MESSAGES = _body(["model", "messages", "max_tokens"], {
    "model": {"type": "string"}, "max_tokens": _TOKENS,
    "messages": _messages(["user", "assistant"], {"anyOf": [_TEXT, _PARTS]}),
    "system": {"anyOf": [_TEXT, _PARTS]}, "stream": {"type": "boolean"}, "temperature": {"type": "number"}})

OPENAI_EMBEDDINGS = _body(["model", "input"], {
    "model": {"type": "string"},
    "input": {"anyOf": [_TEXT, {"type": "array", "minItems": 1, "maxItems": 4, "items": _TEXT}]},
    "encoding_format": {"enum": ["float", "base64"]}, "dimensions": {"type": "integer", "minimum": 1, "maximum": 64}})

OLLAMA_CHAT = _body(["model", "messages"], {
    "model": {"type": "string"},
    "messages": _messages(["system", "user", "assistant"], _TEXT),
    "stream": {"type": "boolean"},
    "options": {"type": "object", "properties": {"num_predict": _TOKENS, "temperature": {"type": "number"}}}})

_GEMINI_METHODS = "generateContent|streamGenerateContent|embedContent|batchEmbedContents"
_GEMINI_TARGET = {"name": "target", "in": "path", "required": True, "description": "`{model}:{method}`",
                  "schema": {"type": "string", "pattern": f"^[A-Za-z0-9._-]+:({_GEMINI_METHODS})$"}}

GEMINI = {"parameters": [_GEMINI_TARGET]} | _body(["contents"], {
    "contents": {"type": "array", "minItems": 1, "maxItems": 4, "items": {
        "type": "object", "required": ["parts"], "properties": {
            "role": {"enum": ["user", "model"]},
            "parts": {"type": "array", "minItems": 1, "maxItems": 3,
                      "items": {"type": "object", "required": ["text"], "properties": {"text": _TEXT}}}}}},
    "generationConfig": {"type": "object", "properties": {"maxOutputTokens": _TOKENS,
                                                          "temperature": {"type": "number"}}},
    # embedContent's one content and batchEmbedContents' requests (the generate methods ignore them)
    "content": {"type": "object", "required": ["parts"], "properties": {
        "parts": {"type": "array", "minItems": 1, "maxItems": 3,
                  "items": {"type": "object", "required": ["text"], "properties": {"text": _TEXT}}}}},
    "requests": {"type": "array", "maxItems": 3, "items": {"type": "object"}}})
