"""Batch and file records in Redis, and the batch scripts behind typed wrappers.

Per batch (hash tag `{b:<id>}`, so every batch script stays on one Cluster slot):

    {p}:{b:<id>}:b        HASH    the batch: fields of `BatchView` (status, counters
                                  n_s/n_e/n_c/n_x, tokens, timestamps, file ids, errors)
    {p}:{b:<id>}:done     STRING  bitmap, bit n = line n's result is in a segment
    {p}:{b:<id>}:pending  HASH    line -> account, for the lines in flight (the feed window); a
                                  line split into several upstream calls (an embeddings line
                                  over the upstream's list limit): its parts' accounts, by part,
                                  joined with "," (account names never hold one)

A line's job id is `<id>.<line>`; a split line's parts are `<id>.<line>.<part>` (`line_jobs`).

Per file `{p}:{f:<id>}` HASH (`FileView`); per client `{p}:{fl:<client>}` and `{p}:{bl:<client>}`
ZSETs (id -> created ms) for listing; `{p}:{files}:expiring` ZSET (file id -> expiry s);
`{p}:{batches}:active` ZSET (batch id -> lease deadline ms) and `{p}:{batches}:holder` HASH (batch
id -> coordinator) for the coordinators; `{p}:{batches}:bell` LIST wakes them when a batch is
created; `{p}:reply:{batcher}` is the channel workers publish batch lines' answers on.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import msgspec
import redis.asyncio as aioredis

from shared.redis.scripts import _source, run_script

BatchDialect = Literal["openai", "anthropic", "gemini"]
Outcome = Literal["s", "e", "c", "x"]  # succeeded, errored, canceled, expired

ACTIVE = ("validating", "in_progress", "finalizing", "cancelling")
TERMINAL = ("completed", "failed", "expired", "cancelled")


class BatchView(msgspec.Struct, omit_defaults=True):
    id: str
    dialect: BatchDialect
    client: str
    endpoint: str
    status: str
    created_at: int
    expires_at: int
    input_file_id: str = ""
    model: str = ""
    completion_window: str = "24h"
    metadata: str = ""  # JSON object, as given
    display_name: str = ""
    output_expires_after: int = 0  # seconds after completion; 0 = never
    total: int = 0
    fed: int = 0
    n_s: int = 0
    n_e: int = 0
    n_c: int = 0
    n_x: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    out_file: str = ""
    err_file: str = ""
    errors: str = ""  # JSON list of LineError
    in_progress_at: int = 0
    finalizing_at: int = 0
    completed_at: int = 0
    failed_at: int = 0
    expired_at: int = 0
    cancelling_at: int = 0
    cancelled_at: int = 0
    ended_at: int = 0
    budget_wait: int = 0  # when feeding last stopped on the owner's budget (s; 0: it is not waiting)

    @property
    def done(self) -> int:
        return self.n_s + self.n_e + self.n_c + self.n_x


class FileView(msgspec.Struct, omit_defaults=True):
    id: str
    client: str
    filename: str
    purpose: str
    bytes: int
    created_at: int
    expires_at: int = 0  # 0 = never


class LineError(msgspec.Struct):
    code: str
    message: str
    line: int | None = None  # 1-based
    param: str | None = None


def job_id(batch_id: str, line: int, part: int = 0, parts: int = 1) -> str:
    """The job id of one upstream call of a line. Deterministic, so a line (or part) fed again is
    the same job."""
    return f"{batch_id}.{line}" if parts == 1 else f"{batch_id}.{line}.{part}"


def line_jobs(batch_id: str, line: int, accounts: list[str]) -> list[tuple[str, str]]:
    """(job id, account) of each upstream call of a line in flight, by part."""
    return [(job_id(batch_id, line, part, len(accounts)), account) for part, account in enumerate(accounts)]


def parse_job_id(job_id: str) -> tuple[str, int, int]:
    """`line_jobs`' inverse: (batch id, line, part); the part of an unsplit line is 0. Raises
    ValueError for an id of another shape."""
    batch_id, line, *part = job_id.split(".")
    if len(part) > 1:
        raise ValueError(job_id)
    return batch_id, int(line), int(part[0]) if part else 0


@dataclass(frozen=True, slots=True)
class BatchKeys:
    batch: str
    done: str
    pending: str


_View = TypeVar("_View", BatchView, FileView)


def _owned(raw: dict[bytes, bytes], kind: type[_View], client: str | None) -> _View | None:
    """A record read back: None when it does not exist or (`client` given) belongs to another."""
    if not raw:
        return None
    view = msgspec.convert({k.decode(): v.decode() for k, v in raw.items()}, kind, strict=False)
    return None if client is not None and view.client != client else view


def _listed_at(created_at: int) -> float:
    """A listing score: creation second, ordered within the second by the time of the write."""
    return created_at * 1000 + time.time() % 1


def _flat(rows: list[tuple[Any, ...]]) -> list[Any]:
    """A script's trailing ARGV: rows of fields, one after another."""
    return [field for row in rows for field in row]


class Records:
    """Reads and writes batch and file records; every multi-key write is one script."""

    def __init__(self, client: aioredis.Redis, prefix: str) -> None:
        self.redis = client
        self.prefix = prefix
        self.active = f"{prefix}:{{batches}}:active"
        self.holder = f"{prefix}:{{batches}}:holder"
        self.bell = f"{prefix}:{{batches}}:bell"
        self.expiring = f"{prefix}:{{files}}:expiring"
        self.channel = f"{prefix}:reply:{{batcher}}"  # hash-tagged: one shard on a Cluster
        self._done = client.register_script(_source("batch_done"))
        self._feed = client.register_script(_source("batch_feed"))
        self._status = client.register_script(_source("batch_status"))
        self._lease = client.register_script(_source("batch_lease"))

    def keys(self, batch_id: str) -> BatchKeys:
        base = f"{self.prefix}:{{b:{batch_id}}}"
        return BatchKeys(f"{base}:b", f"{base}:done", f"{base}:pending")

    def file_key(self, file_id: str) -> str:
        return f"{self.prefix}:{{f:{file_id}}}"

    def file_list(self, client: str) -> str:
        return f"{self.prefix}:{{fl:{client}}}"

    def batch_list(self, client: str) -> str:
        return f"{self.prefix}:{{bl:{client}}}"

    # --- files --------------------------------------------------------------------------------

    async def save_file(self, f: FileView) -> None:
        await self.redis.hset(self.file_key(f.id), mapping=msgspec.to_builtins(f))  # type: ignore[misc]
        await self.redis.zadd(self.file_list(f.client), {f.id: _listed_at(f.created_at)})
        if f.expires_at:
            await self.redis.zadd(self.expiring, {f.id: f.expires_at})

    async def file(self, file_id: str, client: str | None) -> FileView | None:
        """The file, if it exists and (when `client` is given) belongs to that client."""
        return _owned(await self.redis.hgetall(self.file_key(file_id)), FileView, client)  # type: ignore[misc]

    async def drop_file(self, f: FileView) -> None:
        await self.redis.delete(self.file_key(f.id))
        await self.redis.zrem(self.file_list(f.client), f.id)

    async def list_ids(self, zset: str, after: str | None, limit: int, newest_first: bool = True) -> list[str]:
        """Ids after `after` in creation order (newest first by default), up to `limit` + 1."""
        ids = [x.decode() for x in await self.redis.zrange(zset, 0, -1, desc=newest_first)]
        if after:
            ids = ids[ids.index(after) + 1:] if after in ids else []
        return ids[: limit + 1]

    # --- batches ------------------------------------------------------------------------------

    async def create_batch(self, view: BatchView) -> None:
        k = self.keys(view.id)
        pipe = self.redis.pipeline(transaction=False)
        pipe.hset(k.batch, mapping={f: str(v) for f, v in msgspec.to_builtins(view).items()})
        pipe.zadd(self.batch_list(view.client), {view.id: _listed_at(view.created_at)})
        pipe.zadd(self.active, {view.id: 0})
        pipe.lpush(self.bell, "1")
        pipe.ltrim(self.bell, 0, 63)
        await pipe.execute()

    async def batch(self, batch_id: str, client: str | None = None) -> BatchView | None:
        return _owned(await self.redis.hgetall(self.keys(batch_id).batch), BatchView, client)  # type: ignore[misc]

    async def drop_batch(self, view: BatchView) -> None:
        k = self.keys(view.id)
        await self.redis.delete(k.batch, k.done, k.pending)
        await self.redis.zrem(self.batch_list(view.client), view.id)
        await self.retire(view.id)

    async def transition(self, batch_id: str, allowed: tuple[str, ...], to: str, stamp: str = "",
                         **fields: Any) -> tuple[bool, str]:
        args = [",".join(allowed), to, stamp, *_flat([(name, str(value)) for name, value in fields.items()])]
        moved, status = await run_script(self._status, [self.keys(batch_id).batch], args)
        return bool(moved), status.decode() if isinstance(status, bytes) else str(status)

    async def mark_done(self, batch_id: str, results: list[tuple[int, Outcome, int, int]]) -> tuple[int, int]:
        k = self.keys(batch_id)
        fresh, done = await run_script(self._done, [k.batch, k.done, k.pending], _flat(results))
        return int(fresh), int(done)

    async def fed(self, batch_id: str, fed: int, lines: list[tuple[int, list[str]]]) -> str:
        """Feeding has got to line `fed`; `lines` are in flight on these accounts (one per part)."""
        k = self.keys(batch_id)
        args = [fed, *_flat([(line, ",".join(accounts)) for line, accounts in lines])]
        status = await run_script(self._feed, [k.batch, k.pending], args)
        return status.decode() if isinstance(status, bytes) else str(status)

    async def pending(self, batch_id: str) -> dict[int, list[str]]:
        """Lines in flight -> the account of each of their parts."""
        raw = await self.redis.hgetall(self.keys(batch_id).pending)  # type: ignore[misc]
        return {int(k): v.decode().split(",") for k, v in raw.items()}

    async def is_done(self, batch_id: str, line: int) -> bool:
        return bool(await self.redis.getbit(self.keys(batch_id).done, line))

    async def lease(self, me: str, lease_ms: int, want: int, held: list[str]) -> tuple[list[str], list[str]]:
        reply = [x.decode() for x in await run_script(self._lease, [self.active, self.holder],
                                                          [me, lease_ms, want, *held])]
        cut = reply.index("|")
        return reply[:cut], reply[cut + 1:]

    async def retire(self, batch_id: str) -> None:
        """The batch has ended: no coordinator needs to hold it any more."""
        await self.redis.zrem(self.active, batch_id)
        await self.redis.hdel(self.holder, batch_id)  # type: ignore[misc]


def now_s() -> int:
    return int(time.time())
