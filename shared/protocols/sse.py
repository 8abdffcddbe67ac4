"""Server-sent events: an incremental frame parser (upstream side) and a frame writer (client side)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class SseFrame:
    data: bytes
    event: str | None = None
    id: str | None = None


class SseParser:
    """Feeds raw bytes as they arrive; yields complete frames. Frames may split across reads."""

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, chunk: bytes) -> list[SseFrame]:
        self._buffer += chunk
        frames: list[SseFrame] = []
        while True:
            end, sep_len = _frame_end(self._buffer)
            if end < 0:
                break
            raw, self._buffer = self._buffer[:end], self._buffer[end + sep_len :]
            frame = _parse_frame(raw)
            if frame is not None:
                frames.append(frame)
        return frames

    def finish(self) -> list[SseFrame]:
        raw, self._buffer = self._buffer, b""
        frame = _parse_frame(raw) if raw.strip() else None
        return [frame] if frame is not None else []


def _frame_end(buffer: bytes) -> tuple[int, int]:
    best, best_len = -1, 0
    for sep in (b"\n\n", b"\r\n\r\n", b"\r\r"):
        i = buffer.find(sep)
        if i >= 0 and (best < 0 or i < best):
            best, best_len = i, len(sep)
    return best, best_len


def _parse_frame(raw: bytes) -> SseFrame | None:
    data: list[bytes] = []
    event = None
    event_id = None
    for line in raw.splitlines():
        if not line or line.startswith(b":"):
            continue
        field, _, value = line.partition(b":")
        if value.startswith(b" "):
            value = value[1:]
        if field == b"data":
            data.append(value)
        elif field == b"event":
            event = value.decode()
        elif field == b"id":
            event_id = value.decode()
    if not data and event is None:
        return None
    return SseFrame(b"\n".join(data), event, event_id)


def frame(data: bytes, event: str | None = None, event_id: str | None = None) -> bytes:
    """One SSE frame; `data` must not contain newlines (JSON from orjson never does)."""
    head = b""
    if event_id is not None:
        head += b"id: " + event_id.encode() + b"\n"
    if event is not None:
        head += b"event: " + event.encode() + b"\n"
    return head + b"data: " + data + b"\n\n"


KEEPALIVE = b": keep-alive\n\n"
