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
import time
from array import array

import msgspec

from shared.batches.lines import validate
from shared.batches.records import TERMINAL, BatchView, now_s
from worker.batcher.base import FLUSH_SECONDS, SWEEP_SECONDS, Context, input_key
from worker.batcher.ending import Ending

__all__ = ["BatchRunner", "Context"]


class BatchRunner(Ending):
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
