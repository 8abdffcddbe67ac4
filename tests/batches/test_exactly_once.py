"""The two halves of exactly-once, on the real Redis and a real store directory: batch_done.lua
moves the counters once per line however often a line is reported, and finalize keeps the first
record of each line however many segments hold it (a re-run, a second coordinator, a lost mark)."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import msgspec
import redis.asyncio as aioredis

from api.dispatch import Dispatcher
from api.hub import ReplyHub
from shared.batches.records import BatchView, Records, now_s
from shared.batches.store import LocalStore
from shared.config import BatchSettings, Config
from worker.batcher.results import Result
from worker.batcher.runner import BatchRunner, Context


def context(client: aioredis.Redis, tmp: Path) -> Context:
    config = Config(key_prefix=f"t{uuid.uuid4().hex[:8]}", batches=BatchSettings(data_dir=str(tmp)))
    records = Records(client, config.key_prefix)
    return Context(config, records, LocalStore(tmp), Dispatcher(config, client, ReplyHub(client, "unused")), "c1")


def view(batch_id: str, total: int) -> BatchView:
    return BatchView(id=batch_id, dialect="openai", client="me", endpoint="/v1/chat/completions",
                     status="in_progress", created_at=now_s(), expires_at=now_s() + 60, total=total)


def test_a_line_reported_twice_is_counted_once(redis_url: str, tmp_path: Path) -> None:
    async def body() -> None:
        client = aioredis.Redis.from_url(redis_url)
        ctx = context(client, tmp_path)
        await ctx.records.create_batch(view("b1", 3))
        assert await ctx.records.mark_done("b1", [(0, "s", 10, 5), (1, "e", 0, 0)]) == (2, 2)
        assert await ctx.records.mark_done("b1", [(0, "s", 10, 5), (2, "s", 1, 1)]) == (1, 3)  # 0 again: no move
        got = await ctx.records.batch("b1")
        assert got is not None and (got.n_s, got.n_e, got.tokens_in, got.tokens_out) == (2, 1, 11, 6)
        await client.aclose()

    asyncio.run(body())


def test_finalize_keeps_the_first_record_of_each_line(redis_url: str, tmp_path: Path) -> None:
    async def body() -> None:
        client = aioredis.Redis.from_url(redis_url)
        ctx = context(client, tmp_path)
        await ctx.records.create_batch(view("b2", 3))
        first = [Result(0, "s", 3, 4, b'{"custom_id":"a","n":1}'), Result(1, "e", 0, 0, b'{"custom_id":"b"}')]
        again = [Result(0, "s", 3, 4, b'{"custom_id":"a","n":2}'), Result(2, "s", 1, 1, b'{"custom_id":"c"}'),
                 Result(1, "e", 0, 0, b'{"custom_id":"b"}')]
        await ctx.store.put("batches/b2/seg/0001-c1-000001", [b"".join(r.record() for r in first)])
        torn = b"".join(r.record() for r in again) + b"2\ts\t1\t1\t{\"custom_id\":\"c\""  # killed mid-write
        await ctx.store.put("batches/b2/seg/0002-c2-000001", [torn])
        runner = BatchRunner(ctx, "b2")
        await runner._finalize(view("b2", 3), "completed")
        done = await ctx.records.batch("b2")
        assert done is not None and done.status == "completed"
        assert (done.n_s, done.n_e, done.tokens_in, done.tokens_out) == (2, 1, 4, 5)  # counted from the files
        out = (tmp_path / "files" / done.out_file).read_bytes().splitlines()
        err = (tmp_path / "files" / done.err_file).read_bytes().splitlines()
        assert [msgspec.json.decode(x) for x in out] == [{"custom_id": "a", "n": 1}, {"custom_id": "c"}]
        assert err == [b'{"custom_id":"b"}']
        assert not list((tmp_path / "batches" / "b2" / "seg").glob("*"))  # segments gone once assembled
        await client.aclose()

    asyncio.run(body())
