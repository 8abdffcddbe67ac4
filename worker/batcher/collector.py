"""Collecting a batch's answers: from the coordinator's pub/sub inbox, or from the records when
a sweep finds what pub/sub missed; results wait in a buffer and are group-committed into one
segment each flush, then marked done."""

from __future__ import annotations

import asyncio
import time

from shared.batches.records import BatchView, Outcome, job_id, line_jobs
from shared.embeddings import EmbeddingComplete, EmbeddingRequest
from shared.model import ChatRequest, StreamError
from shared.redis import record
from worker.batcher.base import FLUSH_LINES, calls_of
from worker.batcher.feeder import Feeder
from worker.batcher.metering import Used
from worker.batcher.results import Result, answer_in, render, render_embeddings, render_error


class Collector(Feeder):
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
        await self._settle(view, batch)
        await self.ctx.records.mark_done(self.id, [(r.line, r.outcome, r.tokens_in, r.tokens_out) for r in batch])
        for r in batch:
            self._set_done(r.line)
            self.pending.pop(r.line, None)
            self.window.pop(r.line, None)
            self.parts.pop(r.line, None)
        withdraw, self.withdraw = self.withdraw, []
        for name, account in withdraw:  # followed to where a sibling pulled it, if it moved
            await self.ctx.dispatcher.withdraw_queued(account, name)

    async def _settle(self, view: BatchView, batch: list[Result]) -> None:
        """Settles the lines' budget holds with what they used, before they are marked done: a
        crash in between re-collects them, and settling again finds no hold (metering.py)."""
        tenant = self.meter.tenant(view)
        if tenant is None:
            return
        used = [Used(r.line, r.tokens_in, r.tokens_out,
                     self._line(view, r.line).request.model if r.tokens_in or r.tokens_out else "") for r in batch]
        if await self.meter.settle(view, tenant, used):
            self.budget_retry_at = 0.0  # what they did not use is free again: feeding may go on

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
