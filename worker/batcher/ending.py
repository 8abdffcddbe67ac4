"""How a batch ends: winding down on cancel or expiry (queued lines leave, unfed lines end
without running, running ones finish), then finalize: dedupe the segments into the output and
error files and store the counts counted from them."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator

from shared.batches.lines import parse_line
from shared.batches.records import ACTIVE, BatchView, FileView, Outcome, line_jobs, now_s
from worker.batcher.base import FLUSH_SECONDS, SWEEP_SECONDS, WIND_DOWN_CHUNK, output_file_ids
from worker.batcher.collector import Collector
from worker.batcher.results import ended, parse_record

log = logging.getLogger("sluice.batcher")


class Ending(Collector):
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
        tenant = self.meter.tenant(view)
        # lines that waited for budget until the window ended say so (metering.py)
        budget = self.meter.refusal(tenant, waited=True) if tenant is not None and view.budget_wait else None
        for start in range(view.fed, view.total, WIND_DOWN_CHUNK):
            end = min(view.total, start + WIND_DOWN_CHUNK)
            for line in range(start, end):
                raw = self._read_next(view, line)
                if not self._is_done(line):
                    custom_id = parse_line(view.dialect, view.endpoint, view.model, raw).custom_id
                    self.buffer.append(ended(view, line, custom_id, outcome, budget if outcome == "x" else None))
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
