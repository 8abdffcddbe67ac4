"""One worker process's life: claim -> call the provider -> write events back -> acknowledge.

A single claimer task asks Redis (claim.lua) for as many jobs as this process has free slots;
the script hands out a job only when the account's limits allow it, so the worker never
sleeps on a guess: it waits on the account's doorbell when the queue is empty, for the exact
wait the limiter names when a bucket is dry, and for a release when concurrency is full.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Coroutine
from typing import Any

import msgspec
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from shared.config import Account, Config
from shared.errors import GatewayError
from shared.jobs import Claimed, Job, decode_job
from shared.model import Complete, MessageStart, StreamError, Timing, UsageEvent
from shared.protocols.repair import family_of, legalize
from shared.redis.keys import Keys
from shared.redis.scripts import ClaimCode, LimitArgs, Outcome, Scripts, is_noscript
from worker import embeddings
from worker.providers.base import Provider, UpstreamRequest
from worker.resume import ResumeFilter, read_record
from worker.upstream import Transport, UpstreamResult, call, stream
from worker.writer import EventWriter

log = logging.getLogger("sluice.worker")

# How long an upstream 429 without any retry hint blocks the key.
DEFAULT_429_BLOCK_SECONDS = 1.0
# In-process retries of a retryable upstream fault (5xx, connection error) before failing.
MAX_UPSTREAM_RETRIES = 2
# An account whose calls keep failing cools down (routing then prefers its siblings): after this
# many consecutive failed jobs, for 5 s doubling per further failure up to a minute. A key the
# provider refuses (401/403) is held back for five minutes.
COOLDOWN_AFTER_FAILURES = 3
AUTH_COOLDOWN_SECONDS = 300.0


class Worker:
    def __init__(self, config: Config, account: Account, client: aioredis.Redis, provider: Provider,
                 http: Transport, worker_id: str | None = None) -> None:
        self.config = config
        self.account = account
        self.redis = client
        self.provider = provider
        self.family = family_of(account.provider)
        self.embedder = embeddings.embedding_upstream(account)
        self.http = http
        self.id = worker_id or f"{account.name}-{uuid.uuid4().hex[:8]}"
        self.keys = Keys(config.key_prefix)
        self.akeys = self.keys.account(account.name)
        self.scripts = Scripts(client)
        self.limits = LimitArgs.of(account)
        self.capacity = account.limits.concurrency
        self.running: dict[str, asyncio.Task[None]] = {}
        self._slot_freed = asyncio.Event()
        self._stopping = asyncio.Event()
        self._consecutive_failures = 0
        self._learned: dict[str, int] = {}  # the caps this process last wrote, to write only changes

    # --- lifecycle -------------------------------------------------------------------------

    async def run(self) -> None:
        lease_ms = int(self.config.queue.lease_seconds * 1000)
        await self.scripts.load()
        await self.scripts.heartbeat(self.akeys, lease_ms, self.id, [])
        log.info("worker started", extra={"account": self.account.name, "worker": self.id})
        heartbeat = asyncio.create_task(self._heartbeat_loop())
        try:
            while not self._stopping.is_set():
                try:
                    await self._claim_loop()
                except RedisError:
                    # Redis restarting (AOF brings the queue back): keep the process, and the jobs
                    # it runs, alive and claim again once Redis answers
                    log.warning("redis unavailable; claiming again shortly", extra={"account": self.account.name})
                    await self._wait(self._stopping.wait(), 0.5)
        finally:
            heartbeat.cancel()
            # Finish what we hold: a job cut off here would wait out its lease elsewhere.
            if self.running:
                await asyncio.gather(*self.running.values(), return_exceptions=True)
            await self.redis.zrem(self.akeys.workers, self.id)

    def stop(self) -> None:
        self._stopping.set()

    # --- claiming --------------------------------------------------------------------------

    async def _claim_loop(self) -> None:
        while not self._stopping.is_set():
            free = self.capacity - len(self.running)
            if free <= 0:
                self._slot_freed.clear()
                await self._wait(self._slot_freed.wait(), 1.0)
                continue
            asked = min(free, 32)
            result = await self.scripts.claim(self.akeys, self.limits, self.config.queue, asked)
            for job_id, payload in result.dead:
                await self._dead_letter(job_id, payload)
            for job_id, payload, attempt in result.claimed:
                try:
                    job = decode_job(payload)
                except msgspec.DecodeError:  # never let one bad record stop the worker
                    log.error("unreadable job dropped", extra={"request_id": job_id})
                    await self.scripts.ack(self.akeys, self.limits, job_id, None, Outcome.FAILED)
                    continue
                self._start(Claimed(job, attempt), job_id)
            if result.code is ClaimCode.CLAIMED and len(result.claimed) == asked:
                continue  # there may be more right behind
            if result.code is ClaimCode.CLAIMED:
                # Fewer than asked: the script found the queue empty and cleared the doorbell in
                # the same step, so an enqueue from here on rings it. Asking again before
                # waiting would cost a round trip per job and find nothing.
                await self._wait_for_bell()
            elif result.code in (ClaimCode.LIMITER_WAIT, ClaimCode.BLOCKED):
                await self._wait(self._stopping.wait(), result.wait_ms / 1000)
            else:  # CONCURRENCY_FULL across replicas: a release anywhere frees a slot
                self._slot_freed.clear()
                await self._wait(self._slot_freed.wait(), 0.25)

    async def _wait_for_bell(self) -> None:
        # BLPOP returns as soon as an enqueue rings; the timeout bounds how stale lease reaping
        # and shutdown can get.
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.redis.blpop([self.akeys.bell], timeout=1), 1.5)  # type: ignore[arg-type]

    async def _wait(self, awaitable: Coroutine[Any, Any, Any], seconds: float) -> None:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(awaitable, seconds)

    def _start(self, claimed: Claimed, job_id: str) -> None:
        task = asyncio.create_task(self._run_job(claimed))
        self.running[job_id] = task

        def done(_: asyncio.Task[None]) -> None:
            self.running.pop(job_id, None)
            self._slot_freed.set()

        task.add_done_callback(done)

    async def _heartbeat_loop(self) -> None:
        lease_ms = int(self.config.queue.lease_seconds * 1000)
        period = max(0.2, self.config.queue.lease_seconds / 3)
        while True:
            await asyncio.sleep(period)  # periodic lease renewal
            try:
                lost = await self.scripts.heartbeat(self.akeys, lease_ms, self.id, list(self.running))
            except Exception:
                log.exception("heartbeat failed", extra={"account": self.account.name})
                continue
            for job_id in lost:
                task = self.running.get(job_id)
                if task is not None and not task.done():  # done ones were acked during the heartbeat
                    log.warning("lease lost; another worker has the job", extra={"request_id": job_id})
                    task.cancel()

    # --- running one job -------------------------------------------------------------------

    async def _run_job(self, claimed: Claimed) -> None:
        job = claimed.job
        start = time.monotonic()
        try:
            await self._run_job_inner(claimed)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("job crashed", extra={"request_id": job.id})
            await self._end_with_error(job.id, job.reply_to, GatewayError(
                "internal", "the worker failed while running this request"))
            await self.scripts.ack(self.akeys, self.limits, job.id, None, Outcome.FAILED)
        finally:
            log.debug("job done", extra={"request_id": job.id, "ms": (time.monotonic() - start) * 1000})

    async def _run_job_inner(self, claimed: Claimed) -> None:
        job = claimed.job
        claimed_at = time.monotonic()
        queue_ms = max(0.0, time.time() * 1000 - job.enqueued_ms)
        if job.deadline_ms and time.time() * 1000 > job.deadline_ms:
            await self.scripts.ack(self.akeys, self.limits, job.id, (0, 0), Outcome.EXPIRED)
            return
        resume = ResumeFilter()
        next_seq = 1
        if claimed.attempt > 0 and job.embedding is not None:  # one entry, written only when done
            if await self.redis.exists(self.keys.out(job.id)):
                await self.scripts.ack(self.akeys, self.limits, job.id, None, Outcome.COMPLETED)
                return
        elif claimed.attempt > 0:  # an earlier worker died holding this job: see what it sent
            record = await read_record(self.redis, self.keys.out(job.id))
            if record.finished:
                await self.scripts.ack(self.akeys, self.limits, job.id, None, Outcome.COMPLETED)
                return
            resume = ResumeFilter(record.events)
            next_seq = record.next_seq
        writer = EventWriter(self.redis, self.keys.out(job.id), job.reply_to, job.id,
                             self.config.queue.stream_coalesce_ms, self.config.queue.result_ttl_seconds,
                             next_seq)
        try:
            if job.embedding is not None:
                upstream = self.embedder.request(job, job.embedding)
            else:
                # The one place a conversation is made legal for this account's upstream (repairs
                # in shared/protocols/repair.py) and its body built; what cannot be is the client's 400.
                job = msgspec.structs.replace(job, request=legalize(job.request, self.family))
                upstream = self.provider.request(job)
        except GatewayError as err:  # no faithful form for this upstream (a PDF to Mistral): a refusal
            writer.hold([StreamError(err.info())])
            await writer.close()
            await self.scripts.ack(self.akeys, self.limits, job.id, None, Outcome.FAILED)
            return
        seen = UpstreamResult()
        for retry in range(MAX_UPSTREAM_RETRIES + 1):
            try:
                usage = await self._attempt(job, upstream, writer, resume, seen,
                                            Timing(queue_ms=queue_ms), claimed_at)
                break
            except GatewayError as err:
                if err.status == 429 or err.kind == "rate_limited":
                    await self._requeue_after_429(job, err)
                    return
                if err.retryable and writer.written == 0 and retry < MAX_UPSTREAM_RETRIES:
                    await asyncio.sleep(0.25 * 2**retry)  # back off before retrying the provider
                    continue
                log.warning("upstream failed", extra={"request_id": job.id, "kind": err.kind})
                await self._note_failure(err)
                writer.hold([StreamError(err.info())])
                await writer.close()
                await self.scripts.ack(self.akeys, self.limits, job.id, None, Outcome.FAILED, seen.status,
                                       job.upstream_model)
                return
        acked = await writer.close(also=lambda pipe: self.scripts.ack_in_pipeline(
            pipe, self.akeys, self.limits, job.id, usage, Outcome.COMPLETED, seen.status, job.upstream_model))
        if is_noscript(acked):  # Redis lost its scripts (restart, failover): ack the slow way
            await self.scripts.ack(self.akeys, self.limits, job.id, usage, Outcome.COMPLETED, seen.status,
                                   job.upstream_model)
        elif isinstance(acked, Exception):
            raise acked
        self._consecutive_failures = 0
        await self._learn_limits(seen.headers)

    async def _attempt(self, job: Job, upstream: UpstreamRequest, writer: EventWriter,
                       resume: ResumeFilter, seen: UpstreamResult, timing: Timing,
                       claimed_at: float) -> tuple[int, int] | None:
        if job.embedding is not None:
            answer = await embeddings.call(self.http, self.provider, self.embedder, job, upstream, seen)
            writer.hold([embeddings.complete(answer, _stamped(timing, claimed_at, seen.sent_at, seen.done_at))])
            return answer.input_tokens, 0
        if not job.request.stream:
            response = await call(self.http, self.provider, upstream, seen,
                                  self.config.request_limits.max_upstream_body_bytes)
            writer.hold([Complete(response, _stamped(timing, claimed_at, seen.sent_at, seen.done_at))])
            return response.usage.input_tokens, response.usage.output_tokens
        usage: tuple[int, int] | None = None
        timed = False
        async for events in stream(self.http, self.provider, upstream, seen,
                                   self.config.request_limits.max_upstream_body_bytes):
            for event in events:
                if isinstance(event, UsageEvent):
                    usage = event.usage.input_tokens, event.usage.output_tokens
                elif isinstance(event, MessageStart) and not timed:
                    timed = True
                    event.timing = _stamped(timing, claimed_at, seen.sent_at, time.monotonic())
            events = resume.filter(events)
            if events:
                await writer.send(events)
        return usage

    async def _learn_limits(self, headers: dict[str, str]) -> None:
        hold = self.provider.hold_seconds(headers)
        if hold:
            await self.scripts.block(self.akeys, int(hold * 1000))
        caps = self.provider.limit_caps(headers)
        changed = {dim: value for dim, value in caps.items() if self._learned.get(dim) != value}
        if changed:
            self._learned.update(changed)
            await self.scripts.learn(self.akeys, changed)
            log.info("provider-stated limits learned", extra={"account": self.account.name, "caps": changed})

    async def _note_failure(self, err: GatewayError) -> None:
        """Cool the account down when the provider refuses its key or keeps failing."""
        if err.kind == "upstream_auth":
            log.error("the provider refused this account's key; cooling the account down",
                      extra={"account": self.account.name, "cooldown_s": AUTH_COOLDOWN_SECONDS})
            await self.scripts.block(self.akeys, int(AUTH_COOLDOWN_SECONDS * 1000))
            return
        if not err.retryable:
            return  # the request was at fault, not the account
        self._consecutive_failures += 1
        excess = self._consecutive_failures - COOLDOWN_AFTER_FAILURES
        if excess >= 0:
            seconds = min(60.0, 5.0 * 2**excess)
            log.warning("account failing repeatedly; cooling down",
                        extra={"account": self.account.name, "cooldown_s": seconds})
            await self.scripts.block(self.akeys, int(seconds * 1000))

    async def _requeue_after_429(self, job: Job, err: GatewayError) -> None:
        block = err.retry_after if err.retry_after is not None else DEFAULT_429_BLOCK_SECONDS
        log.info("upstream 429; key blocked and job re-queued",
                 extra={"request_id": job.id, "account": self.account.name, "block_s": block})
        await self.scripts.release(self.akeys, self.limits, job.id, int(block * 1000), "upstream_429")

    async def _end_with_error(self, job_id: str, reply_to: str, error: GatewayError) -> None:
        """Appends the error that ends a job's record (after whatever an earlier attempt wrote)."""
        record = await read_record(self.redis, self.keys.out(job_id))
        writer = EventWriter(self.redis, self.keys.out(job_id), reply_to, job_id, 0,
                             self.config.queue.result_ttl_seconds, record.next_seq)
        writer.hold([StreamError(error.info())])
        await writer.close()

    async def _dead_letter(self, job_id: str, payload: bytes) -> None:
        log.error("job dead-lettered after repeated lease expiry", extra={"request_id": job_id})
        try:
            job = decode_job(payload)
        except Exception:
            return
        await self._end_with_error(job_id, job.reply_to, GatewayError(
            "upstream_unavailable", "the request was abandoned after its workers stopped repeatedly", status=503))


def _stamped(timing: Timing, claimed_at: float, sent_at: float, answered_at: float) -> Timing:
    """Fills in the worker's side of `timing` (monotonic instants in, milliseconds out): claim to
    send is dispatch, send to `answered_at` (the whole answer, or a stream's first event) upstream."""
    timing.dispatch_ms = (sent_at - claimed_at) * 1000
    timing.upstream_ms = (answered_at - sent_at) * 1000
    timing.done_at = time.time()
    return timing
