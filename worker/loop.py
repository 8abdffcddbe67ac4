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

import msgspec
import redis.asyncio as aioredis
from redis.exceptions import RedisError, ResponseError

from shared.config import Account, Config
from shared.errors import GatewayError
from shared.jobs import Claimed, Job, decode_job
from shared.model import Complete, MessageStart, StreamError, Timing, UsageEvent
from shared.protocols.repair import family_of, legalize
from shared.redis.client import backoff_seconds
from shared.redis.dlq import DeadLetter, DeadLetters
from shared.redis.handback import HandBack
from shared.redis.idempotency import IdempotencyStore
from shared.redis.keys import Keys
from shared.redis.scripts import ClaimCode, LimitArgs, Outcome, Scripts, is_noscript
from shared.redis.subscription import listen
from worker import embeddings
from worker.cancel import CancelWatch, partial_usage
from worker.providers.base import Provider, UpstreamRequest
from worker.rebalance import Rebalancer
from worker.resume import ResumeFilter, read_record
from worker.retry import RetryPolicy
from worker.upstream import Transport, UpstreamResult, call, stream
from worker.waits import either, within
from worker.writer import EventWriter

log = logging.getLogger("sluice.worker")

# How long an upstream 429 without any retry hint blocks the key.
DEFAULT_429_BLOCK_SECONDS = 1.0
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
        self.dead_letters = DeadLetters(client, self.keys)
        self.hand_back = HandBack(client)
        self.rebalancer = Rebalancer(config, account, client, self._lease_dead_letter)
        self.limits = LimitArgs.of(account)
        self.capacity = account.limits.concurrency
        self.running: dict[str, asyncio.Task[None]] = {}
        self._writers: dict[str, EventWriter] = {}  # of the running jobs: a drain asks what they wrote
        self._slot_freed = asyncio.Event()
        self._nudged = asyncio.Event()  # a fresh tenant's job arrived (enqueue.lua's nudge channel)
        self._stopping = asyncio.Event()
        self._consecutive_failures = 0
        self._learned: dict[str, int] = {}  # the caps this process last wrote, to write only changes
        self.retry = RetryPolicy.of(config.queue)  # upstream faults: worker/retry.py
        self.idempotency = IdempotencyStore(client)
        self._aborted: set[str] = set()  # jobs cancelled because their client left (worker/cancel.py)
        self._cancel_watch = CancelWatch(client, self.keys, config.queue.cancel_poll_seconds)

    # --- lifecycle -------------------------------------------------------------------------

    async def run(self) -> None:
        lease_ms = int(self.config.queue.lease_seconds * 1000)
        failures = 0
        while not self._stopping.is_set():  # Redis may not be up yet: wait for it, do not crash
            try:
                await self.scripts.load()
                await self.scripts.heartbeat(self.akeys, lease_ms, self.id, [])
                break
            except (RedisError, OSError):
                failures += 1
                log.warning("Redis unreachable at start; waiting", extra={"account": self.account.name})
                await within(self._stopping.wait(), backoff_seconds(failures))
        log.info("worker started", extra={"account": self.account.name, "worker": self.id})
        heartbeat = asyncio.create_task(self._heartbeat_loop())
        rebalancer = asyncio.create_task(self.rebalancer.run(self._stopping))
        cancels = asyncio.create_task(self._cancel_watch.run(self.running, self.abort))
        nudges = asyncio.create_task(self._nudge_loop())
        try:
            # Redis restarting (AOF brings the queue back) keeps the process and its jobs alive:
            # the claim loop backs off and claims again once Redis answers
            await self._claim_loop()
        finally:
            rebalancer.cancel()
            await self._drain()
            heartbeat.cancel()
            cancels.cancel()
            nudges.cancel()
            with contextlib.suppress(RedisError, OSError):
                await self.redis.zrem(self.akeys.workers, self.id)

    def stop(self) -> None:
        """Stop claiming; `run` then drains (see `_drain`) and returns."""
        self._stopping.set()

    def abort(self, job_id: str) -> None:
        """Cuts a running job off: its client left (worker/cancel.py)."""
        task = self.running.get(job_id)
        if task is not None and not task.done():
            self._aborted.add(job_id)
            task.cancel()

    async def _drain(self) -> None:
        """Lets the jobs in hand finish within `queue.drain_seconds` (leases still heartbeated), then
        hands the rest back to the queue, so a sibling replica starts them at once instead of after
        their lease; one that had written part of its answer is resumed from its record there."""
        if not self.running:
            return
        log.info("draining", extra={"account": self.account.name, "jobs": len(self.running)})
        _, pending = await asyncio.wait(list(self.running.values()), timeout=self.config.queue.drain_seconds)
        if not pending:
            return
        left = [job_id for job_id, task in self.running.items() if task in pending]
        writers = {job_id: self._writers.get(job_id) for job_id in left}
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        for job_id in left:
            writer = writers[job_id]
            try:
                # partial: the next worker must resume after what the record holds (or may hold)
                partial = writer is None or await writer.abandon()
                await self.hand_back(self.akeys, self.limits, job_id, partial)
            except (RedisError, OSError):  # its lease expires instead
                log.warning("hand-back failed; the lease will expire", extra={"request_id": job_id})
        log.warning("drain timeout: jobs handed back", extra={"account": self.account.name, "jobs": len(left)})

    # --- claiming --------------------------------------------------------------------------

    async def _claim_loop(self) -> None:
        failures = 0
        while not self._stopping.is_set():
            try:
                await self._claim_once()
                failures = 0
            except (RedisError, OSError) as exc:
                failures += 1
                delay = backoff_seconds(failures)
                log.warning("Redis unreachable; claiming paused",
                            extra={"account": self.account.name, "error": type(exc).__name__,
                                   "retry_s": round(delay, 2)})
                await within(self._stopping.wait(), delay)

    async def _claim_once(self) -> None:
        free = self.capacity - len(self.running)
        if free <= 0:
            self._slot_freed.clear()
            await within(self._slot_freed.wait(), 1.0)
            return
        asked = min(free, 32)
        self._nudged.clear()  # before the claim: a nudge from here on names a job it may not have seen
        result = await self.scripts.claim(self.akeys, self.limits, self.config.queue, asked)
        for job_id, payload in result.dead:
            await self._lease_dead_letter(self.account.name, job_id, payload)
        for job_id, payload, attempt in result.claimed:
            try:
                job = decode_job(payload)
            except msgspec.DecodeError:  # never let one bad record stop the worker
                log.error("unreadable job dropped", extra={"request_id": job_id})
                await self.scripts.ack(self.akeys, self.limits, job_id, None, Outcome.FAILED)
                continue
            self._start(Claimed(job, attempt), job_id)
        if result.code is ClaimCode.CLAIMED and len(result.claimed) == asked:
            return  # there may be more right behind
        if result.code is ClaimCode.CLAIMED:
            # Fewer than asked: the script found the queue empty and cleared the doorbell in
            # the same step, so an enqueue from here on rings it. Asking again before
            # waiting would cost a round trip per job and find nothing.
            await self._wait_for_bell()
        elif result.code is ClaimCode.LIMITER_WAIT:
            # A backlogged head waits for its slot, but a fresh tenant's job arriving meanwhile may
            # start at once (claim.lua's fair headroom): its nudge ends the wait early.
            await within(either(self._stopping, self._nudged), result.wait_ms / 1000)
        elif result.code is ClaimCode.BLOCKED:
            await within(self._stopping.wait(), result.wait_ms / 1000)
        else:  # CONCURRENCY_FULL across replicas: a release anywhere frees a slot
            self._slot_freed.clear()
            await within(self._slot_freed.wait(), 0.25)

    async def _wait_for_bell(self) -> None:
        # BLPOP returns as soon as an enqueue rings; the timeout bounds how stale lease reaping
        # and shutdown can get.
        # (asyncio.timeout, not wait_for, which on Python 3.11 wraps every wait in a Task)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(1.5):
                await self.redis.blpop([self.akeys.bell], timeout=1)  # type: ignore[arg-type,misc]

    async def _nudge_loop(self) -> None:
        # Every message, and every (re)subscription (a nudge may have been missed meanwhile), ends
        # a limiter wait early; losing the subscription only costs latency, the wait still ends.
        async for _ in listen(self.redis, self.akeys.nudge):
            self._nudged.set()

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
            except (RedisError, OSError) as exc:  # Redis away: the leases live in Redis, try next period
                log.warning("heartbeat failed", extra={"account": self.account.name, "error": type(exc).__name__})
                continue
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
            if job.id not in self._aborted:
                raise
            self._aborted.discard(job.id)
            await self._end_aborted(job)
        except (RedisError, OSError) as exc:
            # Redis went away mid-job: nothing can be written now, and the lease (kept by Redis,
            # AOF on) brings the job back to a worker that resumes it from its record.
            log.warning("Redis lost while running a job; its lease will bring it back",
                        extra={"request_id": job.id, "error": type(exc).__name__})
        except Exception:
            log.exception("job crashed", extra={"request_id": job.id})
            error = GatewayError("internal", "the worker failed while running this request")
            await self._end_with_error(job.id, job.reply_to, error)
            await self._fail_for_good(job, claimed.attempt + 1, error, 0, "the worker crashed running it")
        finally:
            writer = self._writers.pop(job.id, None)
            if writer is not None:
                await writer.release()  # a job cut off mid-stream still holds its stream's connection
            log.debug("job done", extra={"request_id": job.id, "ms": (time.monotonic() - start) * 1000})

    async def _run_job_inner(self, claimed: Claimed) -> None:
        job = claimed.job
        claimed_at = time.monotonic()
        queue_ms = max(0.0, time.time() * 1000 - job.enqueued_ms)
        if job.deadline_ms and time.time() * 1000 > job.deadline_ms:
            # Its API process may already have given up; if not (the job was claimed as the
            # deadline passed), this is the answer its client waits for: never silence. A batch
            # line's deadline is its batch's expiry: the coordinator ends it as expired when it
            # finds the job gone without an answer, so no 429 may stand in its record.
            if job.priority != "batch":
                await self._end_with_error(job.id, job.reply_to, GatewayError(
                    "rate_limited", "Rate limit: no capacity within the wait deadline; retry later.",
                    retry_after=1.0))
            await self.scripts.ack(self.akeys, self.limits, job.id, (0, 0), Outcome.EXPIRED)
            if job.idempotency_key:  # it never ran: a retry with its Idempotency-Key runs afresh
                await self.idempotency.release(job.idempotency_key, job.id)
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
                             self.config.queue.stream_coalesce_ms,
                             job.record_ttl_seconds or self.config.queue.result_ttl_seconds, next_seq)
        self._writers[job.id] = writer
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
        retry = 0
        while True:
            try:
                usage = await self._attempt(job, upstream, writer, resume, seen,
                                            Timing(queue_ms=queue_ms), claimed_at)
                break
            except GatewayError as err:
                if err.status == 429 or err.kind == "rate_limited":
                    await self._requeue_after_429(job, err)
                    return
                streamed = writer.written > 0
                rerun = self.config.queue.rerun_broken_streams
                wait = self.retry.next_wait(err, retry, streamed and not rerun, job.deadline_ms)
                if wait is not None:
                    log.info("upstream fault; retrying", extra={"request_id": job.id, "kind": err.kind,
                                                                "retry": retry + 1, "wait_s": round(wait, 3)})
                    retry += 1
                    await asyncio.sleep(wait)  # backoff before calling the provider again
                    if streamed:  # re-run: the client gets only what comes after what it has
                        await writer.close()
                        resume = ResumeFilter((await read_record(self.redis, self.keys.out(job.id))).events)
                    continue
                log.warning("upstream failed", extra={"request_id": job.id, "kind": err.kind, "retries": retry})
                await self._note_failure(err)
                writer.hold([StreamError(err.info())])
                await writer.close()
                if err.retryable:  # the provider kept failing, not the request: keep it for replay
                    await self._fail_for_good(job, claimed.attempt + retry + 1, err, seen.status,
                                              f"upstream failed after {retry + 1} attempts: {err.message}")
                else:
                    await self.scripts.ack(self.akeys, self.limits, job.id, None, Outcome.FAILED, seen.status,
                                           job.upstream_model)
                if job.idempotency_key and err.kind != "upstream_rejected":
                    # not the request's own fault: a retry with its Idempotency-Key runs afresh
                    await self.idempotency.release(job.idempotency_key, job.id)
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
            if isinstance(events[-1], StreamError) and (writer.written == 0 or self.config.queue.rerun_broken_streams):
                # broken before anything reached the client (or re-runs allowed): a provider fault,
                # retryable like a dropped connection; an error the provider sent stays as it is
                error = events[-1].error
                broken = error.kind in ("upstream_unavailable", "upstream_timeout")
                raise GatewayError.from_info(msgspec.structs.replace(error, retryable=error.retryable or broken))
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

    async def _end_aborted(self, job: Job) -> None:
        """Ends an aborted job's record (a late resumer is told) and gives back the part of its
        reservation it did not use."""
        record = await read_record(self.redis, self.keys.out(job.id))
        if record.finished:
            # the cut came as it was finishing: its ack went out or not; if not, the lease expires
            # and the next claim finds the record finished and acknowledges it (no double refund)
            return
        for _ in range(3):
            try:
                await self._end_with_error(job.id, job.reply_to, GatewayError(
                    "cancelled", "The client disconnected; the request was cancelled.", status=499))
                break
            except ResponseError:  # the aborted stream's last coalesced write landed first: go after it
                continue
        await self.scripts.ack(self.akeys, self.limits, job.id, partial_usage(job, record), Outcome.ABORTED, 0,
                               job.upstream_model)

    async def _end_with_error(self, job_id: str, reply_to: str, error: GatewayError) -> None:
        """Appends the error that ends a job's record (after whatever an earlier attempt wrote)."""
        record = await read_record(self.redis, self.keys.out(job_id))
        writer = EventWriter(self.redis, self.keys.out(job_id), reply_to, job_id, 0,
                             self.config.queue.result_ttl_seconds, record.next_seq)
        writer.hold([StreamError(error.info())])
        await writer.close()

    async def _fail_for_good(self, job: Job, attempts: int, err: GatewayError, status: int, reason: str) -> None:
        """Dead-letters a claimed job (its client already has `err`), with why, for `sluice dlq`."""
        log.error("job dead-lettered", extra={"request_id": job.id, "kind": err.kind, "status": status})
        await self.dead_letters.dead_letter(self.akeys, DeadLetter(
            job.id, self.account.name, reason, err.kind, status, attempts, model=job.upstream_model))

    async def _lease_dead_letter(self, account: str, job_id: str, payload: bytes) -> None:
        """claim.lua dead-lettered a job of `account` (ours, or a sibling with no live worker: the
        rebalancer) whose lease expired `max_attempts` times: say why, and answer its client."""
        log.error("job dead-lettered after repeated lease expiry", extra={"request_id": job_id})
        attempts = self.config.queue.max_attempts
        await self.dead_letters.note(self.keys.account(account), DeadLetter(
            job_id, account, f"its lease expired {attempts} times (workers stopped while running it)",
            "upstream_unavailable", 0, attempts))
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
