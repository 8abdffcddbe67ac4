"""The narrow seam every provider adapter fills."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from shared.errors import GatewayError
from shared.jobs import Job
from shared.model import ChatResponse, StreamEvent
from shared.protocols.sse import SseFrame


@dataclass(frozen=True, slots=True)
class UpstreamRequest:
    url: str
    headers: dict[str, str]
    body: bytes


class StreamParser(Protocol):
    done: bool

    def feed(self, frame: SseFrame) -> list[StreamEvent]: ...

    def finish(self) -> list[StreamEvent]: ...


class Provider(Protocol):
    name: str

    def request(self, job: Job) -> UpstreamRequest: ...

    def parse_response(self, body: bytes) -> ChatResponse: ...

    def stream_parser(self) -> StreamParser: ...

    def parse_error(self, status: int, body: bytes, headers: dict[str, str]) -> GatewayError: ...

    def hold_seconds(self, headers: dict[str, str]) -> float | None:
        """How long to hold the key back, read from a successful answer's rate-limit headers."""
        ...

    def limit_caps(self, headers: dict[str, str]) -> dict[str, int]:
        """The provider's stated per-minute limits that should cap ours (0 = clear a cap)."""
        ...
