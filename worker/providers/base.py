"""The narrow seam every provider adapter fills, and the base that fills most of it.

A provider adapter adds only the vendor's quirks (URL, headers, rate-limit hints) to an
`UpstreamDialect` (shared/protocols/contracts.py), which owns the wire format.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import orjson

from shared.errors import GatewayError
from shared.jobs import Job
from shared.model import ChatResponse
from shared.protocols.contracts import StreamParser, UpstreamDialect

__all__ = ["DialectProvider", "Provider", "StreamParser", "UpstreamRequest"]


@dataclass(frozen=True, slots=True)
class UpstreamRequest:
    url: str
    headers: dict[str, str]
    body: bytes


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


class DialectProvider:
    """A provider whose answers its dialect reads unaided; subclasses set the URL and headers."""

    def __init__(self, name: str, dialect: UpstreamDialect, url: str, headers: dict[str, str]) -> None:
        self.name = name
        self.dialect = dialect
        self.url = url
        self.headers = headers

    def body(self, job: Job) -> bytes:
        # The job's output reservation is the limit for formats that require one, so the two agree.
        return orjson.dumps(self.dialect.build_request(job.request, job.upstream_model, job.output_reserve))

    def request(self, job: Job) -> UpstreamRequest:
        return UpstreamRequest(self.url, self.headers, self.body(job))

    def parse_response(self, body: bytes) -> ChatResponse:
        return self.dialect.parse_response(body)

    def stream_parser(self) -> StreamParser:
        return self.dialect.stream_parser()

    def parse_error(self, status: int, body: bytes, headers: dict[str, str]) -> GatewayError:
        return self.dialect.parse_error(status, body, headers)
