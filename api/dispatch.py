"""Turning a normalized request into a queued job, and reading its answer back in order.

`Dispatcher.submit` picks the account that can serve the job soonest, registers a waiter with
the process's reply hub, then enqueues (so the subscription exists before any reply can).
`Ticket.entries` yields the job's stream entries exactly once and in order: live from pub/sub,
falling back to the stream record (XRANGE) whenever a sequence number is skipped.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import redis.asyncio as aioredis

from api.hub import ReplyHub
from api.routing import AccountState, WeightedRotation, choose
from shared.config import Config, Model
from shared.errors import GatewayError
from shared.jobs import Job, Priority, encode_job
from shared.model import ChatRequest
from shared.redis.keys import AccountKeys, Keys
from shared.redis.scripts import Scripts
from shared.tokens import estimate_input_tokens

PRIORITY_DELAY = {"interactive": 0}


@dataclass(slots=True)
class Ticket:
    job: Job
    queue: asyncio.Queue[tuple[int, bytes]]
    dispatcher: Dispatcher
    next_seq: int = 1
    enqueued_at: float = field(default_factory=time.monotonic)
    first_entry_at: float | None = None
    running: bool = False  # a worker has it: the queue deadline no longer applies

    async def entries(self, keepalive: float) -> AsyncIterator[tuple[int, bytes] | None]:
        """Yields (seq, payload) in order; None every `keepalive` seconds of silence."""
        deadline = self.job.deadline_ms / 1000
        while True:
            timeout = keepalive
            if self.first_entry_at is None and not self.running:
                timeout = min(keepalive, max(0.01, deadline - time.time()))
            try:
                seq, payload = await asyncio.wait_for(self.queue.get(), timeout)
            except TimeoutError:
                if self.first_entry_at is None and not self.running and time.time() >= deadline:
                    await self.dispatcher.give_up(self)  # raises rate_limited if still queued
                yield None
                continue
            if seq == self.next_seq:
                self._mark()
                self.next_seq += 1
                yield seq, payload
            elif seq > self.next_seq or seq < 0:  # a gap: the record has what we missed
                async for entry in self.dispatcher.read_record(self.job.id, self.next_seq):
                    self._mark()
                    self.next_seq = entry[0] + 1
                    yield entry
            # seq < next_seq: already delivered from the record; drop the duplicate

    def _mark(self) -> None:
        if self.first_entry_at is None:
            self.first_entry_at = time.monotonic()


class Dispatcher:
    def __init__(self, config: Config, client: aioredis.Redis, hub: ReplyHub) -> None:
        self.config = config
        self.redis = client
        self.hub = hub
        self.keys = Keys(config.key_prefix)
        self.scripts = Scripts(client)
        self._rotations: dict[str, WeightedRotation] = {}
        # Jobs this process has routed but not yet enqueued: concurrent requests read the same
        # Redis snapshot, and without this they would all herd onto whichever account it favours.
        self._routing: Counter[str] = Counter()

    def new_job(self, req: ChatRequest, model: Model, account: str, upstream_model: str, client: str,
                max_wait: float | None, priority: Priority = "interactive") -> Job:
        now_ms = int(time.time() * 1000)
        wait = self.config.queue.max_wait_seconds if max_wait is None else max_wait
        reserve = req.max_tokens or model.default_max_tokens or self.config.queue.default_max_tokens
        return Job(
            id=secrets.token_hex(12),
            account=account,
            upstream_model=upstream_model,
            request=req,
            reply_to=self.hub.channel,
            enqueued_ms=now_ms,
            deadline_ms=now_ms + int(wait * 1000),
            input_estimate=estimate_input_tokens(req),
            output_reserve=reserve * req.n,
            priority=priority,
            client=client,
        )

    async def choose_route(self, model: Model, cost_tokens: int, pinned: str | None = None) -> tuple[str, str]:
        """The (account, upstream model) that can start this job soonest, or the `pinned` one
        (header `x-sluice-account`: debugging one key of a model, whatever its state)."""
        if pinned is not None:
            target = next((t for t in model.route if t.account == pinned), None)
            if target is None:
                raise GatewayError("invalid_request", f"The account '{pinned}' (x-sluice-account) does not serve "
                                   f"the model '{model.name}'.", param="x-sluice-account")
            self._routing[target.account] += 1  # until submit() has enqueued it
            return target.account, target.model
        if len(model.route) == 1:
            return model.route[0].account, model.route[0].model
        pipe = self.redis.pipeline(transaction=False)
        for target in model.route:
            keys = self.keys.account(target.account)
            pipe.zcard(keys.ready)
            pipe.hmget(keys.rl, ["tat_r", "tat_t", "blocked"])
        replies = await pipe.execute()
        states = []
        for i in range(len(model.route)):
            tat_r, tat_t, blocked = (float(x) if x else 0.0 for x in replies[2 * i + 1])
            depth = int(replies[2 * i]) + self._routing[model.route[i].account]
            states.append(AccountState(depth, tat_r, tat_t, blocked))
        accounts = [self.config.account(t.account) for t in model.route]
        rotation = self._rotations.setdefault(model.name, WeightedRotation())
        target = model.route[choose(accounts, states, cost_tokens, time.time() * 1000, rotation)]
        self._routing[target.account] += 1  # until submit() has enqueued it
        return target.account, target.model

    def routed(self, account: str) -> None:
        if self._routing[account] > 0:
            self._routing[account] -= 1

    async def submit(self, job: Job, meta: dict[str, str] | None = None) -> Ticket:
        keys = self.keys.account(job.account)
        queue = self.hub.register(job.id)
        try:
            return await self._submit(job, keys, queue, meta)
        finally:
            self.routed(job.account)

    async def _submit(self, job: Job, keys: AccountKeys, queue: asyncio.Queue[tuple[int, bytes]],
                      meta: dict[str, str] | None) -> Ticket:
        ticket = Ticket(job, queue, self)
        try:
            args = (keys, job.id, encode_job(job), (job.input_estimate, job.output_reserve),
                    PRIORITY_DELAY.get(job.priority, int(self.config.queue.batch_delay_seconds * 1000)),
                    self.config.queue.max_depth)
            if meta:  # what a resuming client needs to re-render this stream, in the same round trip
                pipe = self.redis.pipeline(transaction=False)
                pipe.hset(self.keys.out_meta(job.id), mapping=meta)
                pipe.expire(self.keys.out_meta(job.id), self.config.queue.result_ttl_seconds)
                await self.scripts.enqueue(*args, pipe=pipe)
                depth = int((await pipe.execute())[-1])
            else:
                depth = await self.scripts.enqueue(*args)
        except BaseException:
            self.hub.unregister(job.id)
            raise
        if depth < 0:
            self.hub.unregister(job.id)
            raise await self._rate_limited(job.account, self.config.queue.max_depth, "the queue is full")
        return ticket

    def release(self, ticket: Ticket) -> None:
        self.hub.unregister(ticket.job.id)

    async def give_up(self, ticket: Ticket) -> None:
        """The job waited past its deadline: drop it if no worker has it yet."""
        keys = self.keys.account(ticket.job.account)
        if await self.scripts.cancel(keys, ticket.job.id):
            depth = await self.redis.zcard(keys.ready)  # type: ignore[misc]
            raise await self._rate_limited(ticket.job.account, depth, "no capacity within the wait deadline")
        ticket.running = True  # claimed: it is running, keep waiting

    async def _rate_limited(self, account: str, depth: int, why: str) -> GatewayError:
        """Retry-After = how long the jobs already queued take to drain at the account's real
        request rate (the configured one, or the provider's lower stated limit)."""
        rpm = self.config.account(account).limits.rpm or 0
        learned = await self.redis.hget(self.keys.account(account).rl, "cap_r")  # type: ignore[misc]
        if learned and (not rpm or float(learned) < rpm):
            rpm = int(float(learned))
        drain = depth * 60 / rpm if rpm else 1.0
        return GatewayError("rate_limited", f"Rate limit: {why}; retry later.", retry_after=max(1.0, drain))

    async def read_record(self, job_id: str, from_seq: int) -> AsyncIterator[tuple[int, bytes]]:
        entries = await self.redis.xrange(self.keys.out(job_id), min=f"0-{from_seq}")
        for entry_id, fields in entries:
            yield int(entry_id.split(b"-")[1]), fields[b"d"]
