"""Knobs of the mock provider. One mutable instance per process; `POST /_config` edits it live."""

from __future__ import annotations

from typing import Any

import msgspec


class MockSettings(msgspec.Struct, forbid_unknown_fields=True):
    latency_ms: float = 0
    """Delay before the first byte of a stream, or before a non-stream answer."""
    tokens_per_second: float = 0
    """Pacing between stream chunks; 0 sends the whole stream at once."""
    output_tokens: int = 16
    """Tokens generated for a text answer, capped by the request's max tokens."""
    chunk_tokens: int = 1
    """Tokens per stream chunk."""
    rpm: int | None = None
    tpm: int | None = None
    tool_name: str | None = None
    """When the request offers a function tool of this name, the tool-call answer calls it (not the first)."""
    tool_arguments: dict[str, Any] | None = None
    """The arguments of that call (default: built from the tool's schema)."""
    reply_text: str | None = None
    """When set, every text answer is this text (split into tokens at spaces)."""
    api_key: str | None = None
    """When set, every generation request must carry it (else 401)."""
    embedding_dimensions: int = 64
    """Length of an embedding vector when the request names none (shared/mock/embeddings.py)."""
    max_embedding_inputs: int = 2048
    """Most inputs one embeddings call may carry (Gemini's batch also stops at 100)."""
    bucket_seconds: float = 10
    """Limit buckets hold this many seconds' worth of the per-minute rate (at least 2 units):
    real providers enforce over windows shorter than a minute, so a full minute's burst is refused."""

    fail_next: int = 0
    """Fault injection: the next this-many generation requests fail with `fail_status` (after
    auth and latency, like x-mock-fail); counts down as they arrive."""
    fail_status: int = 500
    truncate_after_chunks: int | None = None
    """Fault injection: streams stop after this many chunks, without their closing events (0: right
    after the status line, before even the opening chunk)."""
    truncate_drop: bool = False
    """With truncate_after_chunks: drop the connection there instead of ending the body cleanly."""
    truncate_count: int | None = None
    """With truncate_after_chunks: how many more streams to cut (counts down; None: every one)."""

    def __post_init__(self) -> None:
        # msgspec.convert runs this too, so bad `/_config` bodies are refused with a message.
        if self.latency_ms < 0 or self.tokens_per_second < 0:
            raise ValueError("latency_ms and tokens_per_second must not be negative")
        if self.output_tokens < 0:
            raise ValueError("output_tokens must not be negative")
        if self.chunk_tokens < 1:
            raise ValueError("chunk_tokens must be at least 1")
        if (self.rpm is not None and self.rpm <= 0) or (self.tpm is not None and self.tpm <= 0):
            raise ValueError("rpm and tpm must be positive (or null for unlimited)")
        if self.embedding_dimensions < 1 or self.max_embedding_inputs < 1:
            raise ValueError("embedding_dimensions and max_embedding_inputs must be at least 1")
        if self.bucket_seconds <= 0:
            raise ValueError("bucket_seconds must be positive")
        if self.fail_next < 0 or not 400 <= self.fail_status <= 599:
            raise ValueError("fail_next must not be negative and fail_status must be a 4xx or 5xx")
        if self.truncate_count is not None and self.truncate_count < 0:
            raise ValueError("truncate_count must not be negative")
        if self.truncate_after_chunks is not None and self.truncate_after_chunks < 0:
            raise ValueError("truncate_after_chunks must not be negative")


def update_settings(settings: MockSettings, patch: dict[str, Any]) -> None:
    """Applies `patch` in place (the app and its callers share the instance), all fields or none.

    Raises msgspec.ValidationError for unknown fields, wrong types or bad values.
    """
    merged = msgspec.convert({**msgspec.structs.asdict(settings), **patch}, MockSettings)
    for field in MockSettings.__struct_fields__:
        setattr(settings, field, getattr(merged, field))
