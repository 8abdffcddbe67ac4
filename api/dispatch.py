"""Turning a normalized request into a queued job.

`Dispatcher.new_job` picks the account that can serve the job soonest and builds the job for
it; `submit` registers a waiter with the process's reply hub, then enqueues (so the
subscription exists before any reply can) and hands back the job's `Ticket` (api/ticket.py).
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable

import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline

from api.cancel import Cancellations
from api.hub import ReplyHub
from api.routing import AccountState, WeightedRotation, choose
from api.ticket import Ticket, follow_record
from shared.config import Config, Model
from shared.embeddings import EmbeddingRequest, estimate_tokens
from shared.errors import GatewayError
from shared.jobs import Job, Priority, encode_job
from shared.model import ChatRequest, StreamError
from shared.redis import limiter, record
from shared.redis.idempotency import IdempotencyStore
from shared.redis.keys import AccountKeys, Keys
from shared.redis.limiter import Dim
from shared.redis.moves import Moves
from shared.redis.record import Entry, ReplayInfo, encode_events
from shared.redis.scripts import QUEUE_FULL, Scripts
from shared.tokens import estimate_input_tokens


def new_job_id() -> str:
    return secrets.token_hex(12)


class Dispatcher:
    def __init__(self, config: Config, client: aioredis.Redis, hub: ReplyHub) -> None:
        self.config = config
        self.redis = client
        self.hub = hub
        self.keys = Keys(config.key_prefix)
        self.scripts = Scripts(client)
        self.moves = Moves(client, self.keys)
        self.idempotency = IdempotencyStore(client)
        self.cancels = Cancellations(client, self.keys, self.withdraw, config.queue.stream_cancel_grace_seconds)
        self._rotations: dict[str, WeightedRotation] = {}
        # Jobs this process has routed but not yet enqueued: concurrent requests read the same
        # Redis snapshot, and without this they would all herd onto whichever account it favours.
        self._routing: Counter[str] = Counter()
        self._weights = {c.name: c.weight for c in config.client_keys}  # fair-share weight per tenant

    async def new_job(self, req: ChatRequest | EmbeddingRequest, model: Model, client: str, max_wait: float | None,
                      priority: Priority = "interactive", pinned: str | None = None,
                      job_id: str | None = None) -> Job:
        """The job for `req`, bound to the account (of the model's route) that can start it soonest.
        An embedding request (one upstream call's part) reserves its input estimate and no output.
        `job_id`: the id an Idempotency-Key already names (api/idempotency.py)."""
        estimate, reserve = self.reservation(req, model)
        account, upstream_model = await self.choose_route(model, estimate + reserve, priority == "batch", pinned)
        return self.job_for(req, model, client, max_wait, priority, account, upstream_model, job_id)

    def output_reserve(self, req: ChatRequest, model: Model) -> int:
        return (req.max_tokens or model.default_max_tokens or self.config.queue.default_max_tokens) * req.n

    def reservation(self, req: ChatRequest | EmbeddingRequest, model: Model) -> tuple[int, int]:
        """The (input estimate, output reserve) the job holds in the account's buckets."""
        if isinstance(req, EmbeddingRequest):
            return estimate_tokens(req.inputs), 0
        return estimate_input_tokens(req), self.output_reserve(req, model)

    def job_for(self, req: ChatRequest | EmbeddingRequest, model: Model, client: str, max_wait: float | None,
                priority: Priority, account: str, upstream_model: str, job_id: str | None = None) -> Job:
        """The job for `req` on a route already chosen (a batch feed routes many lines at once)."""
        now_ms = int(time.time() * 1000)
        wait = self.config.queue.max_wait_seconds if max_wait is None else max_wait
        input_estimate, output_reserve = self.reservation(req, model)
        embedding: EmbeddingRequest | None = None
        if isinstance(req, EmbeddingRequest):
            chat, embedding = ChatRequest(model=req.model, messages=[]), req  # why: see Job.embedding
        else:
            chat = req
        return Job(
            id=job_id or new_job_id(),
            account=account,
            upstream_model=upstream_model,
            request=chat,
            reply_to=self.hub.channel,
            enqueued_ms=now_ms,
            deadline_ms=now_ms + int(wait * 1000),
            input_estimate=input_estimate,
            output_reserve=output_reserve,
            priority=priority,
            client=client,
            embedding=embedding,
        )

    async def choose_route(self, model: Model, cost_tokens: int, batch: bool = False,
                           pinned: str | None = None) -> tuple[str, str]:
        """The (account, upstream model) that can start this job soonest (a batch job: the
        account whose batch lane is shortest, since interactive work does not wait behind it),
        or the `pinned` one (header `x-sluice-account`: debugging one key of a model, whatever
        its state). Counted as routed here until `submit` (or `enqueue`) has enqueued it."""
        if pinned is not None:
            target = next((t for t in model.route if t.account == pinned), None)
            if target is None:
                raise GatewayError("invalid_request", f"The account '{pinned}' (x-sluice-account) does not serve "
                                   f"the model '{model.name}'.", param="x-sluice-account")
            self._routing[target.account] += 1  # until submit() has enqueued it
            return target.account, target.model
        return (await self.choose_routes(model, [cost_tokens], batch))[0]

    async def choose_routes(self, model: Model, costs: list[int], batch: bool = False) -> list[tuple[str, str]]:
        """`choose_route` for several jobs from one read of the accounts' state (a batch feed):
        each choice counts as queued for the ones after it."""
        if len(model.route) == 1:
            return [(model.route[0].account, model.route[0].model)] * len(costs)
        pipe = self.redis.pipeline(transaction=False)
        for target in model.route:
            keys = self.keys.account(target.account)
            pipe.zcard(keys.bready if batch else keys.ready)
            limiter.queue_read(pipe, keys.rl)
            pipe.zrange(keys.workers, -1, -1, withscores=True)
        replies = await pipe.execute()
        now_ms = time.time() * 1000
        liveness_ms = self.config.queue.liveness_ms()
        queued, limits, alive = [], [], []
        for i in range(len(model.route)):
            queued.append(int(replies[3 * i]))
            limits.append(limiter.LimiterState.decode(replies[3 * i + 1]))
            newest = replies[3 * i + 2]
            alive.append(bool(newest) and now_ms - float(newest[0][1]) < liveness_ms)
        accounts = [self.config.account(t.account) for t in model.route]
        rotation = self._rotations.setdefault(model.name, WeightedRotation())
        chosen = []
        for cost in costs:
            states = [AccountState(queued[i] + self._routing[model.route[i].account], limits[i], alive[i])
                      for i in range(len(model.route))]
            target = model.route[choose(accounts, states, cost, now_ms, rotation)]
            self._routing[target.account] += 1  # until the job is enqueued
            chosen.append((target.account, target.model))
        return chosen

    def routed(self, account: str) -> None:
        if self._routing[account] > 0:
            self._routing[account] -= 1

    async def submit(self, job: Job, replay: ReplayInfo | None = None) -> Ticket:
        keys = self.keys.account(job.account)
        queue = self.hub.register(job.id)
        try:
            return await self._submit(job, keys, queue, replay)
        finally:
            self.routed(job.account)

    async def _submit(self, job: Job, keys: AccountKeys, queue: asyncio.Queue[Entry],
                      replay: ReplayInfo | None) -> Ticket:
        ticket = Ticket(job, queue, self)
        try:
            if replay is not None:  # what a resuming client needs to re-render this stream, same round trip
                pipe = self.redis.pipeline(transaction=False)
                record.write_replay_info(pipe, self.keys.out_meta(job.id), replay,
                                         job.record_ttl_seconds or self.config.queue.result_ttl_seconds)
                await self._enqueue(job, pipe)
                depth = int((await pipe.execute())[-1])
            else:
                depth = await self._enqueue(job)
        except BaseException:
            self.hub.unregister(job.id)
            raise
        if depth == QUEUE_FULL:
            self.hub.unregister(job.id)
            raise await self._rate_limited(job.account, self.config.queue.max_depth, "the queue is full")
        return ticket

    def _enqueue(self, job: Job, pipe: Pipeline | None = None) -> Awaitable[int]:
        return self.scripts.enqueue(
            self.keys.account(job.account), job.id, encode_job(job), (job.input_estimate, job.output_reserve),
            job.priority == "batch", self.config.queue.max_depth, pipe,
            tenant=job.client, weight=self._weights.get(job.client, 1.0))

    async def enqueue(self, jobs: list[Job]) -> list[int]:
        """Queues jobs nobody waits on here (batch lines: their answers go to `job.reply_to`), in
        one round trip. Returns each one's lane depth, or -1 where the lane was full."""
        pipe = self.redis.pipeline(transaction=False)
        try:
            for job in jobs:
                await self._enqueue(job, pipe)
            return [int(depth) for depth in await pipe.execute()]
        finally:
            for job in jobs:
                self.routed(job.account)

    def follow(self, job: Job) -> Ticket:
        """A ticket for a job another request submitted (an Idempotency-Key retry): it reads the
        job's record, on whichever API process the job was submitted."""
        return Ticket(job, asyncio.Queue(), self, follows=True)

    def release(self, ticket: Ticket) -> None:
        if not ticket.follows:
            self.hub.unregister(ticket.job.id)
        done, ticket.on_release = ticket.on_release, None
        if done is not None:
            done()

    async def withdraw(self, job: Job) -> bool:
        """Takes the job out of its queue; False when a worker already has it. A job a worker
        pulled to another account (worker/rebalance.py) is followed there; it is then released."""
        taken = await self.withdraw_queued(job.account, job.id)
        if taken and job.idempotency_key:
            # it never ran: the client's next retry with this key runs afresh
            await self.idempotency.release(job.idempotency_key, job.id)
        if taken and (job.request.stream or job.idempotency_key):
            await self._end_withdrawn(job)
        return taken

    async def withdraw_queued(self, account: str, job_id: str) -> bool:
        """Takes a job enqueued on `account` out of whichever queue it is in now (following its
        moves); False when a worker already has it. A batch line's window knows only the id."""
        current: str | None = account
        for _ in range(len(self.config.accounts) + 1):
            if current is None:
                return False
            if await self.scripts.cancel(self.keys.account(current), job_id):
                return True
            current = await self.moves.moved_to(current, job_id)
        return False

    async def _end_withdrawn(self, job: Job) -> None:
        """Whoever reads a withdrawn job's record (a client resuming after its grace period, an
        Idempotency-Key retry following it) is told it never ran, instead of waiting forever."""
        error = GatewayError("upstream_unavailable", "The request was withdrawn before it started (its client "
                             "left or its wait ran out); retry it.", status=503, retry_after=1.0, retryable=True)
        pipe = self.redis.pipeline(transaction=False)
        record.append(pipe, self.keys.out(job.id), 1, encode_events([StreamError(error.info())]))
        pipe.expire(self.keys.out(job.id), self.config.queue.result_ttl_seconds)
        await pipe.execute()

    async def follow_record(self, job: Job, keepalive: float) -> AsyncIterator[Entry | None]:
        """The job's record from its start, then each entry as it is written; None every
        `keepalive` of silence. Nothing by the job's deadline: the original is not answering."""
        waited = follow_record(self.redis, self.keys.out(job.id), keepalive)
        async for entry in waited:
            if entry is None and time.time() * 1000 >= job.deadline_ms:
                raise GatewayError("upstream_unavailable", "The first request with this Idempotency-Key has "
                                   "not answered yet; retry later.", status=503, retry_after=1.0)
            yield entry
            if entry is not None:
                break
        async for entry in waited:
            yield entry

    async def give_up(self, ticket: Ticket) -> None:
        """The job waited past its deadline: drop it if no worker has it yet."""
        keys = self.keys.account(ticket.job.account)
        if await self.withdraw(ticket.job):
            depth = await self.redis.zcard(keys.ready)  # type: ignore[misc]
            raise await self._rate_limited(ticket.job.account, depth, "no capacity within the wait deadline")
        ticket.running = True  # claimed: it is running, keep waiting

    async def _rate_limited(self, account: str, depth: int, why: str) -> GatewayError:
        """Retry-After = how long the jobs already queued take to drain at the account's real
        request rate (the configured one, or the provider's lower stated limit)."""
        state = await limiter.read(self.redis, self.keys.account(account).rl)
        rpm = state.per_minute(Dim.REQUESTS, self.config.account(account).limits.rpm)
        drain = depth * 60 / rpm if rpm else 1.0
        return GatewayError("rate_limited", f"Rate limit: {why}; retry later.", retry_after=max(1.0, drain))

    async def read_record(self, job_id: str, from_seq: int) -> list[Entry]:
        return await record.read(self.redis, self.keys.out(job_id), from_seq)
