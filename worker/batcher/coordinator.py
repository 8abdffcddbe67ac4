"""The coordinator process: holds batches by lease, runs each in a `BatchRunner`, routes the
workers' answers (one pub/sub channel for all coordinators) to the runner of their batch, and
deletes expired files. Several replicas share the batches; a SIGKILLed one's batches are taken
over when its leases run out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from api.dispatch import Dispatcher
from api.hub import ReplyHub
from shared.batches.records import Records, now_s, parse_job_id
from shared.batches.store import FileStore, store_for
from shared.config import Config
from shared.redis import reply, subscription
from worker.batcher.runner import BatchRunner, Context

log = logging.getLogger("sluice.batcher")

MAX_BATCHES = 32  # batches one coordinator runs at once


class Coordinator:
    def __init__(self, config: Config, client: aioredis.Redis, store: FileStore | None = None) -> None:
        self.config = config
        self.redis = client
        self.id = uuid.uuid4().hex[:10]
        self.records = Records(client, config.key_prefix)
        hub = ReplyHub(client, self.records.channel)  # never started: it only names the reply channel
        self.ctx = Context(config, self.records, store or store_for(config.batches.data_dir),
                           Dispatcher(config, client, hub), self.id)
        self.runners: dict[str, BatchRunner] = {}
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        await self.ctx.dispatcher.scripts.load()
        listener = asyncio.create_task(self._listen())
        try:
            await self._lease_loop()
        finally:
            listener.cancel()
            for task in self.tasks.values():
                task.cancel()
            await asyncio.gather(*self.tasks.values(), listener, return_exceptions=True)
            with contextlib.suppress(RedisError):
                # hand our batches over at once instead of after the lease
                if self.runners:
                    await self.redis.zadd(self.records.active, dict.fromkeys(self.runners, 0), xx=True)

    async def _lease_loop(self) -> None:
        lease_ms = int(self.config.batches.lease_seconds * 1000)
        period = self.config.batches.lease_seconds / 3
        while not self._stopping.is_set():
            try:
                taken, lost = await self.records.lease(self.id, lease_ms, MAX_BATCHES - len(self.runners),
                                                       list(self.runners))
                for batch_id in lost:
                    log.warning("lease on batch lost", extra={"batch": batch_id})
                    self._drop(batch_id, cancel=True)
                for batch_id in taken:
                    self._start(batch_id)
                await self._expire_files()
            except RedisError as exc:  # Redis restarting: the next round retries
                log.warning("coordinator lease round failed", extra={"error": str(exc)})
            with contextlib.suppress(asyncio.TimeoutError, RedisError):
                await asyncio.wait_for(self.redis.blpop([self.records.bell], timeout=max(1, int(period))),  # type: ignore[arg-type]
                                       period + 1)

    def _start(self, batch_id: str) -> None:
        runner = BatchRunner(self.ctx, batch_id)
        self.runners[batch_id] = runner
        task = asyncio.create_task(self._run(runner))
        self.tasks[batch_id] = task

    async def _run(self, runner: BatchRunner) -> None:
        while True:
            try:
                await runner.run()
                break
            except asyncio.CancelledError:
                raise
            except RedisError:
                log.warning("redis unavailable while running a batch; retrying", extra={"batch": runner.id})
                await asyncio.sleep(1.0)  # back off while Redis is away
                runner = BatchRunner(self.ctx, runner.id)
                self.runners[runner.id] = runner
            except Exception:
                log.exception("batch runner failed; it will be retried", extra={"batch": runner.id})
                await asyncio.sleep(1.0)  # back off before the retry
                runner = BatchRunner(self.ctx, runner.id)
                self.runners[runner.id] = runner
        self._drop(runner.id, cancel=False)

    def _drop(self, batch_id: str, cancel: bool) -> None:
        self.runners.pop(batch_id, None)
        task = self.tasks.pop(batch_id, None)
        if cancel and task is not None:
            task.cancel()

    async def _listen(self) -> None:
        """Every coordinator hears every batch answer and keeps those of the batches it holds.
        Messages missed while disconnected are found by the runners' sweeps."""
        async for message in subscription.listen(self.redis, self.records.channel):
            if message is None:  # (re)subscribed: sweep for what may have been missed
                for runner in self.runners.values():
                    runner.sweep_now.set()
                continue
            try:
                job, (seq, payload) = reply.decode(message)
                batch_id, line, part = parse_job_id(job.decode())
                holder = self.runners.get(batch_id)
                if holder is not None:
                    holder.offer(line, part, seq, payload)
            except ValueError:
                log.error("unreadable batch answer dropped")

    async def _expire_files(self) -> None:
        """Retention: files past their expiry are deleted from the store and from Redis."""
        expiring = self.records.expiring
        for raw in await self.redis.zrangebyscore(expiring, "-inf", now_s(), start=0, num=100):
            file_id = raw.decode()
            view = await self.records.file(file_id, None)
            if view is not None:
                await self.ctx.store.delete(f"files/{file_id}")
                await self.records.drop_file(view)
            await self.redis.zrem(expiring, file_id)
