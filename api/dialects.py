"""The client-facing dialects the API serves. Each is a module implementing `ClientDialect`
(shared/protocols/contracts.py); the declared types below make mypy check every one of them."""

from __future__ import annotations

from shared.protocols import anthropic_messages, gemini, ollama, openai_chat, openai_responses
from shared.protocols.contracts import ClientDialect as Dialect
from shared.protocols.contracts import StreamRenderer as Renderer

__all__ = ["ANTHROPIC", "DIALECTS", "GEMINI", "OLLAMA", "OPENAI_CHAT", "OPENAI_RESPONSES", "Dialect", "Renderer"]

OPENAI_CHAT: Dialect = openai_chat
OPENAI_RESPONSES: Dialect = openai_responses
ANTHROPIC: Dialect = anthropic_messages
GEMINI: Dialect = gemini
OLLAMA: Dialect = ollama

DIALECTS: dict[str, Dialect] = {d.name: d for d in (OPENAI_CHAT, OPENAI_RESPONSES, ANTHROPIC, GEMINI, OLLAMA)}
