"""Feeding a batch's lines onto the accounts' batch lanes: a bounded window at a time, in line
order from one open reader, each line cut into its upstream calls and routed and enqueued as the
live route would; and feeding a lost call again."""

from __future__ import annotations

import logging
import time

import msgspec

from shared.batches.lines import Line, LineProblem, parse_line
from shared.batches.records import BatchView, Outcome, job_id, now_s
from shared.jobs import Job
from worker.batcher.base import Call, RunnerBase, calls_of, input_key
from worker.batcher.metering import BUDGET_RETRY_SECONDS, Estimate
from worker.batcher.results import Result, ended, render_refusal

log = logging.getLogger("sluice.batcher")


class Feeder(RunnerBase):
    def _read_next(self, view: BatchView, line: int) -> bytes:
        """Lines in feeding order, from one open reader while feeding stays sequential."""
        if self._reader is None or self._reader_at != line:
            self._reader = self.ctx.store.read_lines(input_key(view), self.offsets[line])
        for raw in self._reader:
            if raw.strip():
                self._reader_at = line + 1
                return raw
        raise EOFError(f"input ended before line {line}")

    async def _feed(self, view: BatchView) -> None:
        room = self.ctx.config.batches.window - len(self.pending)
        start = view.fed
        end = min(view.total, start + max(0, room))
        if end <= start or time.monotonic() < self.budget_retry_at:
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
        stop = await self._reserve(view, lines, calls, failed)
        if stop is not None:  # lines from `stop` on wait for budget: fed from there later
            end = stop
            lines = {line: parsed for line, parsed in lines.items() if line < stop}
            calls = [call for call in calls if call.line < stop]
            failed = [r for r in failed if r.line < stop]
            if end <= start:
                return
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

    async def _reserve(self, view: BatchView, lines: dict[int, Line], calls: list[Call],
                       failed: list[Result]) -> int | None:
        """Reserves each line's estimate against the owner's budgets (metering.py), in line order;
        returns the first line there is no room for (None: every one was reserved). A line over
        the whole budget fails now (moved from `lines`/`calls` to `failed`)."""
        tenant = self.meter.tenant(view)
        if tenant is None or not lines:
            return None
        by_line: dict[int, list[Call]] = {}
        for call in calls:
            by_line.setdefault(call.line, []).append(call)
        estimates: list[Estimate] = []
        for line, parsed in sorted(lines.items()):
            estimate = self.meter.estimate(self.ctx.dispatcher, line, [c.request for c in by_line.get(line, [])])
            if self.meter.never_fits(tenant, estimate):
                failed.append(render_refusal(view, line, parsed.custom_id, job_id(self.id, line),
                                             self.meter.refusal(tenant, waited=False)))
                del lines[line]
                calls[:] = [call for call in calls if call.line != line]
            else:
                estimates.append(estimate)
        admitted = await self.meter.admit(view, tenant, estimates)
        if admitted == len(estimates):
            if view.budget_wait:
                await self.ctx.records.transition(self.id, ("in_progress",), "in_progress", "", budget_wait=0)
            return None
        stop = estimates[admitted].line
        self.budget_retry_at = time.monotonic() + BUDGET_RETRY_SECONDS
        if not view.budget_wait:
            log.info("batch waits for its tenant's budget", extra={"batch": self.id, "line": stop})
            await self.ctx.records.transition(self.id, ("in_progress",), "in_progress", "", budget_wait=now_s())
        return stop

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

    async def _lost(self, view: BatchView, line: int, part: int, ending: Outcome | None) -> None:
        if self._settled(view, line):
            return
        parsed = self._line(view, line)
        if ending is not None:
            self.buffer.append(ended(view, line, parsed.custom_id, ending))
            return
        calls = calls_of(self.ctx.config, line, parsed)
        tenant = self.meter.tenant(view)
        if tenant is not None:  # still held: kept as it is; settled already (a rare re-run): reserved anew
            estimate = self.meter.estimate(self.ctx.dispatcher, line, [c.request for c in calls])
            if not await self.meter.admit(view, tenant, [estimate]):
                return  # no room now: the next sweep finds it lost again and asks again
        log.warning("batch line lost; feeding it again", extra={"batch": self.id, "line": line, "part": part})
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
