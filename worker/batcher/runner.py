"""One batch, run by the coordinator that holds its lease: validate, feed a bounded window of
lines onto the accounts' batch lanes, collect each line's answer into the store as it finishes,
then finalize; or wind down on cancel or when the completion window passes.

Exactly once (see docs/ARCHITECTURE.md, Batches): a result is first written to a new segment
object (fsynced), then marked done by batch_done.lua (bitmap test-and-set + counters); finalize
keeps the first record per line. Whatever is lost between those steps (a SIGKILL, a Redis
restart) is re-collected or re-run and dropped as a duplicate.

A line is one job, except an embeddings line whose inputs are more than an upstream takes in one
call: it is cut as the live route cuts it (`embedding_parts.plan`) and each part is a job of its
own (`<batch>.<line>.<part>`), claimed, rate limited and answered once. Parts' answers wait in
their records; the line is done, as one joined result, when all of them are there, and fails
when one part fails (its siblings still queued are withdrawn). A lost part is fed again alone.
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
from shared.batches.records import (
    ACTIVE,
    TERMINAL,
    BatchView,
    FileView,
    Outcome,
    Records,
    job_id,
    line_jobs,
    now_s,
)
from shared.batches.store import FileStore
from shared.config import Config
from shared.embedding_parts import plan
from shared.embeddings import EmbeddingComplete, EmbeddingRequest
from shared.errors import GatewayError
from shared.jobs import Job
from shared.model import ChatRequest, StreamError
from shared.redis import record
from worker.batcher.results import (
    Result,
    answer_in,
    ended,
    parse_record,
    render,
    render_embeddings,
    render_error,
)

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


class BatchRunner:
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

    # --- entry points -------------------------------------------------------------------------

    def offer(self, line: int, part: int, seq: int, payload: bytes) -> None:
        self.inbox.put_nowait((line, part, seq, payload))

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
            result = await asyncio.to_thread(validate, lines, view.dialect, view.endpoint, view.model, config, limits,
                                           view.client)
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
        calls: list[Call] = []
        failed: list[Result] = []
        for line in range(start, end):
            raw = self._read_next(view, line)
            try:
                parsed = parse_line(view.dialect, view.endpoint, view.model, raw)
                calls += calls_of(self.ctx.config, line, parsed)
                lines[line] = parsed
            except LineProblem as p:  # validated already; only a changed config gets here
                failed.append(Result(line, "e", 0, 0, msgspec.json.encode({"line": line + 1, "error": p.message})))
        fed: dict[int, list[str]] = {}
        for call, account in await self._enqueue(view, calls):
            fed.setdefault(call.line, [""] * call.parts)[call.part] = account
        self.window.update(lines)
        # A line whose lane was full is noted as in flight all the same: the sweep finds no job
        # for it and feeds it again.
        await self.ctx.records.fed(self.id, end, list(fed.items()))
        self.pending.update(fed)
        if failed:
            self.buffer += failed
            await self._flush(view)

    async def _enqueue(self, view: BatchView, calls: list[Call]) -> list[tuple[Call, str]]:
        """Routes and enqueues calls as batch-lane jobs (one read of the accounts' state and one
        round trip for all); returns each call with its account."""
        config, dispatcher = self.ctx.config, self.ctx.dispatcher
        by_model: dict[str, list[Call]] = {}
        for call in calls:
            if config.model(call.request.model) is None:
                raise LineProblem("model_not_found", f"The model {call.request.model!r} no longer exists.")
            by_model.setdefault(call.request.model, []).append(call)
        wait = max(1.0, view.expires_at - time.time())
        jobs: list[Job] = []
        placed: list[tuple[Call, str]] = []
        for name, group in by_model.items():
            model = config.model(name)
            assert model is not None
            costs = [sum(dispatcher.reservation(call.request, model)) for call in group]
            routes = await dispatcher.choose_routes(model, costs, batch=True)
            for call, (account, upstream) in zip(group, routes, strict=True):
                job = dispatcher.job_for(call.request, model, view.client, wait, "batch", account, upstream)
                job.id = job_id(self.id, call.line, call.part, call.parts)
                job.reply_to = self.ctx.records.channel
                jobs.append(job)
                placed.append((call, account))
        await dispatcher.enqueue(jobs)
        return placed

    # --- collecting ---------------------------------------------------------------------------

    async def _collect(self, view: BatchView, wait: float) -> None:
        deadline = time.monotonic() + wait
        while len(self.buffer) < FLUSH_LINES:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                line, part, seq, payload = await asyncio.wait_for(self.inbox.get(), left)
            except TimeoutError:
                break
            if seq != 1:  # a re-run appended to the record: its first answer is the one
                payload = await self._first_answer(view, line, part) or payload
            self._take(view, line, part, payload)
        await self._flush(view)

    def _settled(self, view: BatchView, line: int) -> bool:
        """The line's result is known: marked done, or waiting in the buffer for its segment."""
        return line >= view.total or self._is_done(line) or any(r.line == line for r in self.buffer)

    def _take(self, view: BatchView, line: int, part: int, payload: bytes) -> None:
        if self._settled(view, line):
            return
        answer = answer_in(view, payload)
        if answer is None:
            return
        parsed = self._line(view, line)
        name = job_id(self.id, line)  # the line's request id, whatever its parts
        if isinstance(answer, StreamError):
            self.buffer.append(render_error(view, line, parsed.custom_id, name, answer))
            accounts = self.pending.get(line, [])
            if len(accounts) > 1:  # a failed part fails the line: its siblings still queued need not run
                self.withdraw += [call for k, call in enumerate(line_jobs(self.id, line, accounts)) if k != part]
        elif isinstance(answer, EmbeddingComplete):
            assert isinstance(parsed.request, EmbeddingRequest)
            answers = self.parts.setdefault(line, {})
            answers[part] = answer
            calls = calls_of(self.ctx.config, line, parsed)
            if len(answers) == len(calls):
                self.parts.pop(line)
                self.buffer.append(render_embeddings(view, line, parsed.custom_id, name, parsed.request,
                                                     [answers[k] for k in range(len(calls))]))
        else:
            assert isinstance(parsed.request, ChatRequest)
            self.buffer.append(render(view, line, parsed.custom_id, name, parsed.request, answer))

    async def _first_answer(self, view: BatchView, line: int, part: int) -> bytes | None:
        parts = len(self.pending.get(line, [""]))
        key = self.ctx.dispatcher.keys.out(job_id(self.id, line, part, parts))
        for _, events in await record.read(self.ctx.records.redis, key):
            if answer_in(view, events) is not None:
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
            self.parts.pop(r.line, None)
        withdraw, self.withdraw = self.withdraw, []
        for name, account in withdraw:  # followed to where a sibling pulled it, if it moved
            await self.ctx.dispatcher.withdraw_queued(account, name)

    async def _sweep(self, view: BatchView, ending: Outcome | None) -> None:
        """The record is the truth: collect answers pub/sub did not deliver; a call whose job is
        gone and whose record holds no answer is fed again (or, winding down, its line ends)."""
        await self._reload_done()  # a Redis restart may have lost marks: those lines run again
        self.pending = await self.ctx.records.pending(self.id)
        calls = [(line, part, name, account) for line in sorted(self.pending) if not self._is_done(line)
                 for part, (name, account) in enumerate(line_jobs(self.id, line, self.pending[line]))]
        keys = self.ctx.dispatcher.keys
        for start in range(0, len(calls), 256):
            chunk = calls[start:start + 256]
            pipe = self.ctx.records.redis.pipeline(transaction=False)
            for _, _, name, account in chunk:
                pipe.hexists(keys.account(account).jobs, name)
                pipe.xrange(keys.out(name))
            replies = await pipe.execute()
            for i, (line, part, _, _) in enumerate(chunk):
                exists, entries = replies[2 * i], replies[2 * i + 1]
                answer = next((bytes(fields[record.FIELD]) for _, fields in entries
                               if answer_in(view, fields[record.FIELD]) is not None), None)
                if answer is not None:
                    self._take(view, line, part, answer)
                elif not exists and not await self._moved_on(name, account):
                    await self._lost(view, line, part, ending)
        await self._flush(view)

    async def _moved_on(self, name: str, account: str) -> bool:
        """True when a call's job is not lost but was pulled to a sibling account while queued
        (worker/rebalance.py): its answer is then collected like any other (so it runs once, and
        batch_done.lua marks its line once). `pending` keeps the account it was fed to; every
        sweep follows the move from there (not rewritten here: a line that finishes meanwhile would
        get its pending entry back after batch_done.lua dropped it)."""
        moves, keys = self.ctx.dispatcher.moves, self.ctx.dispatcher.keys
        now = await moves.follow(account, name, len(self.ctx.config.accounts))
        return now != account and bool(await self.ctx.records.redis.hexists(keys.account(now).jobs, name))  # type: ignore[misc]

    async def _lost(self, view: BatchView, line: int, part: int, ending: Outcome | None) -> None:
        if self._settled(view, line):
            return
        parsed = self._line(view, line)
        if ending is not None:
            self.buffer.append(ended(view, line, parsed.custom_id, ending))
            return
        log.warning("batch line lost; feeding it again", extra={"batch": self.id, "line": line, "part": part})
        calls = calls_of(self.ctx.config, line, parsed)
        accounts = self.pending.get(line, [])
        if len(accounts) != len(calls):  # the config now cuts it otherwise: feed the whole line again
            accounts, lost = [""] * len(calls), calls
        else:
            lost = [calls[part]]
        for call in lost:
            await self.ctx.records.redis.delete(self.ctx.dispatcher.keys.out(
                job_id(self.id, line, call.part, call.parts)))
        for call, account in await self._enqueue(view, lost):
            accounts[call.part] = account
        self.pending[line] = accounts
        await self.ctx.records.fed(self.id, 0, [(line, accounts)])

    # --- ending -------------------------------------------------------------------------------

    async def _wind_down(self, view: BatchView, outcome: Outcome) -> None:
        """Cancel or expiry: queued lines leave their lanes and end now, unfed lines end without
        running, lines already running finish and are collected; then finalize."""
        dispatcher = self.ctx.dispatcher
        self.pending = await self.ctx.records.pending(self.id)
        for line, accounts in sorted(self.pending.items()):
            if self._is_done(line):
                continue
            # every part still queued leaves (followed if a sibling pulled it to another account);
            # a line with one part gone can only end now
            gone = [await dispatcher.withdraw_queued(account, name)
                    for name, account in line_jobs(self.id, line, accounts)]
            if any(gone):
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

