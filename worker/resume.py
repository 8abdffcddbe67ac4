"""Re-running a job whose worker died mid-stream without repeating what the client already has.

The new attempt reads the job's record, then drops from its own output every event and every
character the record already holds, so the record (and each client) sees one continuous
answer. This assumes the provider regenerates the same prefix (true for the mock and for
temperature 0); where it does not, the client sees the old prefix joined to the new tail.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import msgspec
import redis.asyncio as aioredis

from shared.model import (
    TERMINAL_EVENTS,
    BlockStart,
    BlockStop,
    MessageStart,
    ReasoningDelta,
    StreamEvent,
    TextDelta,
    ToolArgsDelta,
)
from shared.redis import record as stream_record
from shared.redis.record import decode_events


@dataclass(slots=True)
class Record:
    events: list[StreamEvent] = field(default_factory=list)
    next_seq: int = 1
    finished: bool = False


async def read_record(client: aioredis.Redis, key: str) -> Record:
    record = Record()
    for seq, events in await stream_record.read(client, key):
        record.events.extend(decode_events(events))
        record.next_seq = seq + 1
    record.finished = any(isinstance(e, TERMINAL_EVENTS) for e in record.events)
    return record


class ResumeFilter:
    def __init__(self, sent: list[StreamEvent] | None = None) -> None:
        self._started = False
        self._opened: set[int] = set()
        self._closed: set[int] = set()
        self._chars: dict[int, int] = {}
        self._signed: set[int] = set()  # reasoning blocks whose signature the record holds
        for event in sent or []:
            if isinstance(event, MessageStart):
                self._started = True
            elif isinstance(event, BlockStart):
                self._opened.add(event.index)
            elif isinstance(event, BlockStop):
                self._closed.add(event.index)
            elif isinstance(event, TextDelta | ReasoningDelta):
                self._chars[event.index] = self._chars.get(event.index, 0) + len(event.text)
                if isinstance(event, ReasoningDelta) and (event.signature or event.redacted is not None):
                    self._signed.add(event.index)
            elif isinstance(event, ToolArgsDelta):
                self._chars[event.index] = self._chars.get(event.index, 0) + len(event.json)
        self.active = bool(sent)

    def filter(self, events: list[StreamEvent]) -> list[StreamEvent]:
        if not self.active:
            return events
        out: list[StreamEvent] = []
        for event in events:
            if isinstance(event, MessageStart):
                if not self._started:
                    out.append(event)
            elif isinstance(event, BlockStart):
                if event.index not in self._opened:
                    out.append(event)
            elif isinstance(event, BlockStop):
                if event.index not in self._closed:
                    out.append(event)
            elif isinstance(event, TextDelta):
                rest = self._skip(event.index, event.text)
                if rest:
                    out.append(TextDelta(event.index, rest))
            elif isinstance(event, ToolArgsDelta):
                rest = self._skip(event.index, event.json)
                if rest:
                    out.append(ToolArgsDelta(event.index, rest))
            elif isinstance(event, ReasoningDelta):
                rest = self._skip(event.index, event.text)
                # The opaque parts (signature, redacted payload) go out once: drop them when the
                # record already holds this block's.
                held = event.index in self._signed
                signature = None if held else event.signature
                redacted = None if held else event.redacted
                if rest or signature or redacted is not None:
                    out.append(msgspec.structs.replace(event, text=rest, signature=signature, redacted=redacted))
            else:
                out.append(event)
        return out

    def _skip(self, index: int, text: str) -> str:
        owed = self._chars.get(index, 0)
        if owed <= 0:
            return text
        taken = min(owed, len(text))
        self._chars[index] = owed - taken
        return text[taken:]
