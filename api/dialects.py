"""The client-facing dialects the API serves, behind one small interface."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from shared.errors import GatewayError
from shared.model import ChatResponse, StreamEvent
from shared.protocols import openai_chat


class Renderer(Protocol):
    def render(self, event: StreamEvent) -> list[tuple[str | None, bytes]]: ...


@dataclass(frozen=True, slots=True)
class Dialect:
    name: str
    render_response: Callable[[ChatResponse, str, str], bytes]
    renderer: Callable[[str, str, bool], Renderer]
    render_error: Callable[[GatewayError], tuple[int, bytes, dict[str, str]]]


OPENAI_CHAT = Dialect("openai_chat", openai_chat.render_response, openai_chat.StreamRenderer,
                      openai_chat.render_error)

DIALECTS: dict[str, Dialect] = {d.name: d for d in (OPENAI_CHAT,)}
