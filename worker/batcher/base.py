"""What every part of a batch's run shares: the coordinator's context, a line's upstream calls,
and the run's state (the done bitmap, the fed window, lines in flight, results awaiting their
segment) with the small reads over it. The run itself is split by job: feeding lines onto the
accounts' lanes (feeder.py), collecting answers into segments and sweeping the window
(collector.py), winding down and finalizing (ending.py), the loop and validation (runner.py).
"""

from __future__ import annotations

import asyncio
import time
from array import array
from collections.abc import Iterator
from dataclasses import dataclass

from api.dispatch import Dispatcher
from shared.batches.lines import Line, LineProblem, parse_line
from shared.batches.records import BatchView, Records
from shared.batches.store import FileStore
from shared.config import Config
from shared.embedding_parts import plan
from shared.embeddings import EmbeddingComplete, EmbeddingRequest
from shared.errors import GatewayError
from shared.model import ChatRequest
from worker.batcher.metering import BatchMeter
from worker.batcher.results import Result

FLUSH_SECONDS = 0.2  # group commit: results wait at most this long for their segment
FLUSH_LINES = 512
SWEEP_SECONDS = 2.0  # how often the window is checked against the records (missed pub/sub, lost jobs)
WIND_DOWN_CHUNK = 2000


@dataclass(slots=True)
class Context:
    config: Config
    records: Records
    store: FileStore
    dispatcher: Dispatcher
    coordinator: str


def input_key(view: BatchView) -> str:
    return f"files/{view.input_file_id}" if view.input_file_id else f"batches/{view.id}/input.jsonl"


@dataclass(frozen=True, slots=True)
class Call:
    """One upstream call of a line: the whole line, or part `part` of `parts`."""

    line: int
    part: int
    parts: int
    request: ChatRequest | EmbeddingRequest


def calls_of(config: Config, line: int, parsed: Line) -> list[Call]:
    """A line's upstream calls, cut as the live route cuts the same request. Raises LineProblem
    when the config changed under a validated line."""
    req = parsed.request
    if isinstance(req, ChatRequest):
        return [Call(line, 0, 1, req)]
    try:
        parts = plan(config, req)[1]
    except GatewayError as err:
        raise LineProblem("invalid_request", err.message, err.param) from None
    return [Call(line, k, len(parts), part) for k, part in enumerate(parts)]


def output_file_ids(batch_id: str) -> tuple[str, str]:
    """Deterministic, so a finalize that runs twice writes the same objects."""
    return f"file-o{batch_id}", f"file-e{batch_id}"


class RunnerBase:
    def __init__(self, ctx: Context, batch_id: str) -> None:
        self.ctx = ctx
        self.id = batch_id
        self.inbox: asyncio.Queue[tuple[int, int, int, bytes]] = asyncio.Queue()  # (line, part, seq, events)
        self.view: BatchView | None = None
        self.offsets = array("Q")
        self.done = bytearray()
        self.window: dict[int, Line] = {}  # fed lines this process still has parsed
        self.pending: dict[int, list[str]] = {}  # line -> account of each part, in flight
        self.parts: dict[int, dict[int, EmbeddingComplete]] = {}  # split lines' answered parts
        self.withdraw: list[tuple[str, str]] = []  # (job id, account): parts of lines that failed
        self.buffer: list[Result] = []
        self.segment = 0
        self.started_ms = int(time.time() * 1000)
        self.sweep_now = asyncio.Event()
        self._reader: Iterator[bytes] | None = None
        self._reader_at = -1
        self.meter = BatchMeter(ctx.config, ctx.records.redis, ctx.dispatcher.keys)
        self.budget_retry_at = 0.0  # monotonic: feeding waits for budget until then (or a settle)

    # --- entry points -------------------------------------------------------------------------

    def offer(self, line: int, part: int, seq: int, payload: bytes) -> None:
        self.inbox.put_nowait((line, part, seq, payload))

    async def _reload_done(self) -> None:
        raw = await self.ctx.records.redis.get(self.ctx.records.keys(self.id).done) or b""
        self.done = bytearray(raw) + bytearray(max(0, len(self.offsets) // 8 + 1 - len(raw)))

    async def _refresh(self) -> BatchView | None:
        self.view = await self.ctx.records.batch(self.id)
        return self.view

    # --- lines --------------------------------------------------------------------------------

    def _is_done(self, line: int) -> bool:
        # Redis bitmaps are big-endian within a byte: bit n is (byte n//8) >> (7 - n%8)
        return bool(self.done[line >> 3] & (0x80 >> (line & 7)))

    def _set_done(self, line: int) -> None:
        self.done[line >> 3] |= 0x80 >> (line & 7)

    def _line(self, view: BatchView, line: int) -> Line:
        parsed = self.window.get(line)
        if parsed is None:
            raw = next(self.ctx.store.read_lines(input_key(view), self.offsets[line]))
            parsed = parse_line(view.dialect, view.endpoint, view.model, raw)
        return parsed

    def _settled(self, view: BatchView, line: int) -> bool:
        """The line's result is known: marked done, or waiting in the buffer for its segment."""
        return line >= view.total or self._is_done(line) or any(r.line == line for r in self.buffer)

    async def _flush(self, view: BatchView) -> None:
        """Writes the buffered results (collector.py); feeding needs it for lines that fail at once."""
        raise NotImplementedError
