"""Mistral's Chat Completions (La Plateforme, and Devstral served by vLLM with the mistral
tokenizer): OpenAI-shaped, but strict. Built on openai_chat, with these differences:

- tool-call ids must be exactly 9 letters or digits: any other id is mapped to a stable
  9-character one (a hash, so a call and its result map to the same id in every request;
  ids Mistral itself made are already valid and pass through unchanged, both ways);
- unknown fields are refused with 422: only the fields Mistral documents are sent
  (`seed` is spelled `random_seed`, no `user`, no `stream_options`, no `reasoning_effort`);
- `tool_choice: required` is spelled `any`;
- images are refused for text-only models by the server itself; we pass them through;
- PDF documents are refused with a 400 of our own (Devstral reads none); text documents go as text.

Implements `UpstreamDialect`: answers, streams and errors are OpenAI's, read by the same code.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from shared.model import ChatRequest
from shared.protocols import openai_chat_upstream
from shared.protocols.common import refuse_documents
from shared.protocols.openai_chat_upstream import parse_error, parse_response, stream_parser

__all__ = ["build_request", "parse_error", "parse_response", "stream_parser", "tool_call_id"]

_VALID_ID = re.compile(r"^[A-Za-z0-9]{9}$")
_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
_ALLOWED = {
    "model", "messages", "temperature", "top_p", "max_tokens", "stream", "stop", "random_seed",
    "response_format", "tools", "tool_choice", "presence_penalty", "frequency_penalty", "n",
    "parallel_tool_calls", "prompt_mode", "safe_prompt",
}


def tool_call_id(original: str) -> str:
    """A 9-alphanumeric id Mistral accepts, the same for the same input every time."""
    if _VALID_ID.match(original):
        return original
    number = int.from_bytes(hashlib.sha256(original.encode()).digest()[:8], "big")
    chars = []
    for _ in range(9):
        number, digit = divmod(number, 62)
        chars.append(_ALPHABET[digit])
    return "".join(chars)


def build_request(req: ChatRequest, upstream_model: str, default_max_tokens: int = 4096) -> dict[str, Any]:
    refuse_documents(req, "Mistral")
    body = openai_chat_upstream.build_request(req, upstream_model, default_max_tokens)
    if "seed" in body:
        body["random_seed"] = body.pop("seed")
    if body.get("tool_choice") == "required":
        body["tool_choice"] = "any"
    for message in body["messages"]:
        for call in message.get("tool_calls") or []:
            call["id"] = tool_call_id(call["id"])
        if message.get("role") == "tool":
            message["tool_call_id"] = tool_call_id(message["tool_call_id"])
        if message.get("role") == "assistant" and message.get("content") is None and message.get("tool_calls"):
            message["content"] = ""
    last = body["messages"][-1] if body["messages"] else None
    if last is not None and last["role"] == "assistant" and not last.get("tool_calls"):
        last["prefix"] = True  # a history ending in the model's words asks to continue them
    return {k: v for k, v in body.items() if k in _ALLOWED}
