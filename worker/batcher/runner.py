"""One batch, run by the coordinator that holds its lease: validate, feed a bounded window of
lines onto the accounts' batch lanes, collect each line's answer into the store as it finishes,
then finalize; or wind down on cancel or when the completion window passes.

Exactly once (see docs/ARCHITECTURE.md, Batches): a result is first written to a new segment
object (fsynced), then marked done by batch_done.lua (bitmap test-and-set + counters); finalize
keeps the first record per line. Whatever is lost between those steps (a SIGKILL, a Redis
restart) is re-collected or re-run and dropped as a duplicate.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from array import array
from collections.abc import Iterator
from dataclasses import dataclass

import msgspec

from api.dispatch import Dispatcher
from shared.batches.lines import Line, LineProblem, parse_line, validate
from shared.batches.records import ACTIVE, TERMINAL, BatchView, FileView, Outcome, Records, now_s
from shared.batches.store import FileStore
from shared.config import Config
from shared.jobs import Job
from shared.redis import record
from shared.redis.record import decode_events
from shared.tokens import estimate_input_tokens
from worker.batcher.results import Result, ended, parse_record, render, terminal

log = logging.getLogger("sluice.batcher")

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


def job_id(batch_id: str, line: int) -> str:
    return f"{batch_id}.{line}"


def output_file_ids(batch_id: str) -> tuple[str, str]:
    """Deterministic, so a finalize that runs twice writes the same objects."""
    return f"file-o{batch_id}", f"file-e{batch_id}"


class BatchRunner:
    def __init__(self, ctx: Context, batch_id: str) -> None:
        self.ctx = ctx
        self.id = batch_id
        self.inbox: asyncio.Queue[tuple[int, int, bytes]] = asyncio.Queue()  # (line, seq, events)
        self.view: BatchView | None = None
        self.offsets = array("Q")
        self.done = bytearray()
        self.window: dict[int, Line] = {}  # fed lines this process still has parsed
        self.pending: dict[int, str] = {}  # line -> account, in flight
        self.buffer: list[Result] = []
        self.segment = 0
        self.started_ms = int(time.time() * 1000)
        self.sweep_now = asyncio.Event()
        self._reader: Iterator[bytes] | None = None
        self._reader_at = -1

    # --- entry points -------------------------------------------------------------------------

    def offer(self, line: int, seq: int, payload: bytes) -> None:
        self.inbox.put_nowait((line, seq, payload))

    async def run(self) -> None:
        view = await self._refresh()
        if view is None or view.status in TERMINAL:
            await self.ctx.records.retire(self.id)
            return
        if view.status == "validating" or (view.status == "cancelling" and not view.in_progress_at):
            # a batch cancelled before it ran is validated too: its lines still end as cancelled
            view = await self._validate(view)
            if view.status in TERMINAL:
                await self.ctx.records.retire(self.id)
                return
        await self._load()
        await self._sweep(view, ending=None)
        last_sweep = time.monotonic()
        while True:
            view = await self._refresh()
            if view is None:
                return  # deleted under us
            if view.status == "finalizing" or (view.status == "in_progress" and view.done >= view.total):
                await self._finalize(view, "completed")
                return
            if view.status == "cancelling" or (view.status == "in_progress" and now_s() >= view.expires_at):
                await self._wind_down(view, "c" if view.status == "cancelling" else "x")
                return
            if view.status != "in_progress":
                return
            await self._feed(view)
            await self._collect(view, FLUSH_SECONDS)
            if self.sweep_now.is_set() or time.monotonic() - last_sweep > SWEEP_SECONDS:
                self.sweep_now.clear()
                await self._sweep(view, ending=None)
                last_sweep = time.monotonic()

    # --- validation ---------------------------------------------------------------------------

    async def _validate(self, view: BatchView) -> BatchView:
        store, config = self.ctx.store, self.ctx.config
        limits = None
        if view.dialect == "anthropic":
            limits = (config.batches.anthropic_max_requests, config.batches.anthropic_max_bytes)
        try:
            lines = store.read_lines(input_key(view))
            result = await asyncio.to_thread(validate, lines, view.dialect, view.endpoint, view.model, config, limits)
        except FileNotFoundError:
            gone = [{"code": "file_not_found", "message": "The input file no longer exists.", "line": None}]
            await self.ctx.records.transition(self.id, ("validating", "cancelling"), "failed", "failed_at",
                                              errors=msgspec.json.encode(gone).decode())
            return await self._refresh() or view
        if result.errors:
            errors = msgspec.json.encode(result.errors).decode()
            await self.ctx.records.transition(self.id, ("validating", "cancelling"), "failed", "failed_at",
                                              errors=errors, total=result.total)
        else:
            await store.put(f"batches/{self.id}/index", [result.offsets.tobytes()])
            model = next(iter(result.models)) if len(result.models) == 1 else view.model
            moved, status = await self.ctx.records.transition(
                self.id, ("validating",), "in_progress", "in_progress_at", total=result.total, model=model)
            if not moved and status == "cancelling":  # keep it cancelling, but know its lines
                await self.ctx.records.transition(self.id, ("cancelling",), "cancelling", "in_progress_at",
                                                  total=result.total, model=model)
        return await self._refresh() or view

    async def _load(self) -> None:
        chunks = [c async for c in self.ctx.store.read(f"batches/{self.id}/index")]
        self.offsets = array("Q")
        self.offsets.frombytes(b"".join(chunks))
        await self._reload_done()
        self.pending = await self.ctx.records.pending(self.id)

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

    def _read_next(self, view: BatchView, line: int) -> bytes:
        """Lines in feeding order, from one open reader while feeding stays sequential."""
        if self._reader is None or self._reader_at != line:
            self._reader = self.ctx.store.read_lines(input_key(view), self.offsets[line])
        for raw in self._reader:
            if raw.strip():
                self._reader_at = line + 1
                return raw
        raise EOFError(f"input ended before line {line}")

    # --- feeding ------------------------------------------------------------------------------

    async def _feed(self, view: BatchView) -> None:
        room = self.ctx.config.batches.window - len(self.pending)
        start = view.fed
        end = min(view.total, start + max(0, room))
        if end <= start:
            return
        lines: dict[int, Line] = {}
        failed: list[Result] = []
        for line in range(start, end):
            raw = self._read_next(view, line)
            try:
                lines[line] = parse_line(view.dialect, view.endpoint, view.model, raw)
            except LineProblem as p:  # validated already; only a changed config gets here
                failed.append(Result(line, "e", 0, 0, msgspec.json.encode({"line": line + 1, "error": p.message})))
        fed = await self._enqueue(view, lines)
        self.window.update(lines)
        # A line whose lane was full is noted as in flight all the same: the sweep finds no job
        # for it and feeds it again.
        await self.ctx.records.fed(self.id, end, list(fed.items()))
        self.pending.update(fed)
        if failed:
            self.buffer += failed
            await self._flush(view)

    async def _enqueue(self, view: BatchView, lines: dict[int, Line]) -> dict[int, str]:
        """Routes and enqueues lines as batch-lane jobs (one read of the accounts' state and one
        round trip for all); returns line -> account."""
        config, dispatcher = self.ctx.config, self.ctx.dispatcher
        by_model: dict[str, list[tuple[int, Line]]] = {}
        for line, parsed in lines.items():
            if config.model(parsed.request.model) is None:
                raise LineProblem("model_not_found", f"The model {parsed.request.model!r} no longer exists.")
            by_model.setdefault(parsed.request.model, []).append((line, parsed))
        wait = max(1.0, view.expires_at - time.time())
        jobs: list[Job] = []
        for name, group in by_model.items():
            model = config.model(name)
            assert model is not None
            costs = [estimate_input_tokens(p.request) + dispatcher.output_reserve(p.request, model) for _, p in group]
            routes = await dispatcher.choose_routes(model, costs, batch=True)
            for (line, parsed), (account, upstream) in zip(group, routes, strict=True):
                job = dispatcher.job_for(parsed.request, model, view.client, wait, "batch", account, upstream)
                job.id = job_id(self.id, line)
                job.reply_to = self.ctx.records.channel
                jobs.append(job)
        await dispatcher.enqueue(jobs)
        return {int(job.id.rpartition(".")[2]): job.account for job in jobs}

    # --- collecting ---------------------------------------------------------------------------

    async def _collect(self, view: BatchView, wait: float) -> None:
        deadline = time.monotonic() + wait
        while len(self.buffer) < FLUSH_LINES:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                line, seq, payload = await asyncio.wait_for(self.inbox.get(), left)
            except TimeoutError:
                break
            if seq != 1:  # a re-run appended to the record: its first answer is the one
                payload = await self._first_answer(line) or payload
            self._take(view, line, payload)
        await self._flush(view)

    def _take(self, view: BatchView, line: int, payload: bytes) -> None:
        if line >= view.total or self._is_done(line) or any(r.line == line for r in self.buffer):
            return
        event = terminal(decode_events(payload))
        if event is None:
            return
        parsed = self._line(view, line)
        self.buffer.append(render(view, line, parsed.custom_id, job_id(self.id, line), parsed.request, event))

    async def _first_answer(self, line: int) -> bytes | None:
        for _, events in await record.read(self.ctx.records.redis, self.ctx.dispatcher.keys.out(job_id(self.id, line))):
            if terminal(decode_events(events)) is not None:
                return bytes(events)
        return None

    async def _flush(self, view: BatchView) -> None:
        if not self.buffer:
            return
        batch, self.buffer = self.buffer, []
        self.segment += 1
        key = f"batches/{self.id}/seg/{self.started_ms:013d}-{self.ctx.coordinator}-{self.segment:06d}"
        await self.ctx.store.put(key, [b"".join(r.record() for r in batch)])  # durable before it counts
        await self.ctx.records.mark_done(self.id, [(r.line, r.outcome, r.tokens_in, r.tokens_out) for r in batch])
        for r in batch:
            self._set_done(r.line)
            self.pending.pop(r.line, None)
            self.window.pop(r.line, None)

    async def _sweep(self, view: BatchView, ending: Outcome | None) -> None:
        """The record is the truth: collect answers pub/sub did not deliver; a line whose job is
        gone and whose record holds no answer is fed again (or, winding down, ends)."""
        await self._reload_done()  # a Redis restart may have lost marks: those lines run again
        self.pending = await self.ctx.records.pending(self.id)
        lines = sorted(line for line in self.pending if not self._is_done(line))
        keys = self.ctx.dispatcher.keys
        for start in range(0, len(lines), 256):
            chunk = lines[start:start + 256]
            pipe = self.ctx.records.redis.pipeline(transaction=False)
            for line in chunk:
                pipe.hexists(keys.account(self.pending[line]).jobs, job_id(self.id, line))
                pipe.xrange(keys.out(job_id(self.id, line)))
            replies = await pipe.execute()
            for i, line in enumerate(chunk):
                exists, entries = replies[2 * i], replies[2 * i + 1]
                answer = next((bytes(fields[record.FIELD]) for _, fields in entries
                               if terminal(decode_events(fields[record.FIELD]))), None)
                if answer is not None:
                    self._take(view, line, answer)
                elif not exists and not await self._moved_on(line):
                    await self._lost(view, line, ending)
        await self._flush(view)

    async def _moved_on(self, line: int) -> bool:
        """True when the line's job is not lost but was pulled to a sibling account while queued
        (worker/rebalance.py): its answer is then collected like any other (so it runs once, and
        batch_done.lua marks it once). `pending` keeps the account it was fed to; every sweep
        follows the move from there (not rewritten here: a line that finishes meanwhile would
        get its pending entry back after batch_done.lua dropped it)."""
        moves, keys = self.ctx.dispatcher.moves, self.ctx.dispatcher.keys
        source, jid = self.pending[line], job_id(self.id, line)
        now = await moves.follow(source, jid, len(self.ctx.config.accounts))
        return now != source and bool(await self.ctx.records.redis.hexists(keys.account(now).jobs, jid))  # type: ignore[misc]

    async def _lost(self, view: BatchView, line: int, ending: Outcome | None) -> None:
        parsed = self._line(view, line)
        if ending is not None:
            self.buffer.append(ended(view, line, parsed.custom_id, ending))
            return
        log.warning("batch line lost; feeding it again", extra={"batch": self.id, "line": line})
        await self.ctx.records.redis.delete(self.ctx.dispatcher.keys.out(job_id(self.id, line)))
        fed = await self._enqueue(view, {line: parsed})
        self.pending.update(fed)
        await self.ctx.records.fed(self.id, 0, list(fed.items()))

    # --- ending -------------------------------------------------------------------------------

    async def _wind_down(self, view: BatchView, outcome: Outcome) -> None:
        """Cancel or expiry: queued lines leave their lanes and end now, unfed lines end without
        running, lines already running finish and are collected; then finalize."""
        dispatcher = self.ctx.dispatcher
        self.pending = await self.ctx.records.pending(self.id)
        for line, account in sorted(self.pending.items()):
            # withdraw_queued follows a line a sibling pulled to another account while queued
            if not self._is_done(line) and await dispatcher.withdraw_queued(account, job_id(self.id, line)):
                self.buffer.append(ended(view, line, self._line(view, line).custom_id, outcome))
        await self._flush(view)
        for start in range(view.fed, view.total, WIND_DOWN_CHUNK):
            end = min(view.total, start + WIND_DOWN_CHUNK)
            for line in range(start, end):
                raw = self._read_next(view, line)
                if not self._is_done(line):
                    custom_id = parse_line(view.dialect, view.endpoint, view.model, raw).custom_id
                    self.buffer.append(ended(view, line, custom_id, outcome))
            await self._flush(view)
            await self.ctx.records.fed(self.id, end, [])
        last_sweep = time.monotonic()
        while self.pending:  # in flight: let them finish
            await self._collect(view, FLUSH_SECONDS)
            if time.monotonic() - last_sweep > SWEEP_SECONDS:
                await self._sweep(view, outcome)
                last_sweep = time.monotonic()
        fresh = await self._refresh()
        await self._finalize(fresh or view, "cancelled" if outcome == "c" else "expired")

    async def _finalize(self, view: BatchView, final: str) -> None:
        records, store = self.ctx.records, self.ctx.store
        if final == "completed":
            await records.transition(self.id, ("in_progress",), "finalizing", "finalizing_at")
        total = view.total
        winner = bytearray(total)  # the outcome of each line's first record, in segment order
        segments = await store.list(f"batches/{self.id}/seg/")
        for key in segments:
            for raw in store.read_lines(key):
                r = parse_record(raw)
                if r is not None and r.line < total and not winner[r.line]:
                    winner[r.line] = ord(r.outcome)
        counts = {"s": 0, "e": 0, "c": 0, "x": 0}
        tokens = [0, 0]

        def assemble(successes: bool) -> Iterator[bytes]:
            emitted = bytearray(total)
            for key in segments:
                for raw in store.read_lines(key):
                    r = parse_record(raw)
                    if r is None or r.line >= total or emitted[r.line] or winner[r.line] != ord(r.outcome):
                        continue
                    if (r.outcome == "s") != successes:
                        continue
                    emitted[r.line] = 1
                    counts[r.outcome] += 1
                    tokens[0] += r.tokens_in
                    tokens[1] += r.tokens_out
                    yield r.body + b"\n"

        out_id, err_id = output_file_ids(self.id)
        now = now_s()
        expires = 0
        if view.dialect == "anthropic":
            expires = now + int(self.ctx.config.batches.results_retention_seconds)
        elif view.output_expires_after:
            expires = now + view.output_expires_after
        files: dict[str, str] = {}
        for file_id, successes, name in ((out_id, True, "output"), (err_id, False, "error")):
            size = await store.put(f"files/{file_id}", assemble(successes))
            if size == 0:
                await store.delete(f"files/{file_id}")
                continue
            files[name] = file_id
            await records.save_file(FileView(file_id, view.client, f"batch_{self.id}_{name}.jsonl", "batch_output",
                                             size, now, expires))
        stamp = f"{final}_at"
        moved, _ = await records.transition(
            self.id, (*ACTIVE,), final, stamp, n_s=counts["s"], n_e=counts["e"], n_c=counts["c"], n_x=counts["x"],
            tokens_in=tokens[0], tokens_out=tokens[1], out_file=files.get("output", ""),
            err_file=files.get("error", ""), ended_at=now)
        if moved:
            log.info("batch ended", extra={"batch": self.id, "status": final, "counts": counts})
        await records.retire(self.id)
        await store.delete_prefix(f"batches/{self.id}/seg/")
        with contextlib.suppress(FileNotFoundError):
            await store.delete(f"batches/{self.id}/index")

