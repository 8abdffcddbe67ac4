"""The per-request stream record: a job's events, in order, durable for `result_ttl_seconds`.

Contract (every reader and writer goes through this module):

    key        {p}:out:{req}   (Keys.out), a Redis Stream
    entry id   0-<seq>         seq = 1, 2, 3, ... chosen by the writer, not by Redis: the id is
                               known before the write, so the same entry goes out on the reply
                               channel in the same round trip (shared/redis/reply.py), and two
                               workers writing one job can never both succeed at one position
    field      d               the entry's events: one msgspec-JSON array of StreamEvent

An entry's events are encoded once, by the worker; the reply frame carries the same bytes, and
each reader decodes them once. An `Entry` is the tuple (seq, encoded events): a plain tuple,
because the API makes one per stream chunk and a NamedTuple costs ~5x as much to build.

Beside it, `{p}:outmeta:{req}` says how to render the record again for a resuming client
(`ReplayInfo`, at the end of this module).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources

import msgspec
import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline
from redis.exceptions import NoScriptError, ResponseError

from shared.model import StreamEvent

FIELD = b"d"


Entry = tuple[int, bytes]  # (seq, encode_events(...) of the entry's events)


_events_encoder = msgspec.json.Encoder()
_events_decoder = msgspec.json.Decoder(list[StreamEvent])


def encode_events(events: list[StreamEvent]) -> bytes:
    return _events_encoder.encode(events)


def decode_events(payload: bytes) -> list[StreamEvent]:
    return _events_decoder.decode(payload)


def entry_id(seq: int) -> str:
    return f"0-{seq}"


def seq_of(raw_id: bytes | str) -> int:
    """The sequence number of a stream entry id `0-<seq>`."""
    text = raw_id.decode() if isinstance(raw_id, bytes) else raw_id
    major, sep, minor = text.partition("-")
    if major != "0" or not sep:
        raise ValueError(f"not a record entry id: {text!r}")
    return int(minor)


def append(pipe: Pipeline, key: str, seq: int, events: bytes) -> None:
    """Queues the entry's XADD on the caller's pipeline (the writer adds the publish beside it)."""
    pipe.xadd(key, {FIELD: events}, id=entry_id(seq))


def already_written(reply: object) -> bool:
    """True when `append`'s XADD was refused because the entry is there already: a write sent
    again after a failover, whose first attempt had landed."""
    return isinstance(reply, ResponseError) and "equal or smaller than the target stream top item" in str(reply)


_APPEND_SOURCE = (resources.files("shared.redis") / "lua" / "append.lua").read_text()
_APPEND_SHA = hashlib.sha1(_APPEND_SOURCE.encode()).hexdigest()


# The script's body without its comment header: what `append_eval` sends with every write.
_APPEND_BODY = "\n".join(line for line in _APPEND_SOURCE.splitlines() if not line.startswith("--"))


def append_eval(key: str, seq: int, events: bytes, ttl_seconds: int, channel: str,
                frame: bytes) -> tuple[str, str, int, str, str, bytes, int, str, bytes]:
    """The same write as `append_now`, as a whole EVAL command (the script's body included), for a
    caller that sends it without reading the reply at once (worker/quiet.py): an EVALSHA could
    meet a script cache that is empty for a moment (a restart, SCRIPT FLUSH) and be refused while
    a later one, after another writer loaded the script, lands. EVAL is never refused for that."""
    return ("EVAL", _APPEND_BODY, 1, key, entry_id(seq), events, ttl_seconds, channel, frame)


async def append_now(client: aioredis.Redis, key: str, seq: int, events: bytes, ttl_seconds: int,
                     channel: str, frame: bytes) -> None:
    """Writes the entry, refreshes the record's expiry (ttl_seconds > 0) and publishes `frame` on
    `channel` (unless ""), in one EVALSHA of lua/append.lua. Redis without the script (a restart)
    answers NOSCRIPT having run nothing: load it and send again."""
    args = (_APPEND_SHA, 1, key, entry_id(seq), events, ttl_seconds, channel, frame)
    try:
        try:
            await client.evalsha(*args)  # type: ignore[arg-type,misc]  # bytes and ints are fine; async client
        except NoScriptError:
            await client.script_load(_APPEND_SOURCE)
            await client.evalsha(*args)  # type: ignore[arg-type,misc]
    except ResponseError as exc:
        if not already_written(exc):  # a write sent again after a failover, whose first attempt landed
            raise


def decode_entry(raw_id: bytes, fields: dict[bytes, bytes]) -> Entry:
    return seq_of(raw_id), fields[FIELD]


async def read(client: aioredis.Redis, key: str, from_seq: int = 1) -> list[Entry]:
    """Every entry from `from_seq` on, in order (one XRANGE)."""
    return [decode_entry(raw_id, fields) for raw_id, fields in await client.xrange(key, min=entry_id(from_seq))]


async def read_after(client: aioredis.Redis, key: str, after_seq: int, count: int, block_ms: int) -> list[Entry]:
    """Up to `count` entries after `after_seq`, waiting up to `block_ms` for one (one XREAD)."""
    reply = await client.xread({key: entry_id(after_seq)}, count=count, block=block_ms)
    if not reply:
        return []
    return [decode_entry(raw_id, fields) for raw_id, fields in reply[0][1]]


async def read_last(client: aioredis.Redis, key: str, count: int) -> list[Entry]:
    """The last `count` entries, newest first (one XREVRANGE)."""
    return [decode_entry(raw_id, fields) for raw_id, fields in await client.xrevrange(key, count=count)]


# --- the record's re-render metadata ----------------------------------------------------------
#
#     key     {p}:outmeta:{req}   (Keys.out_meta), a HASH with the record's expiry
#     fields  dialect, model, client, usage ("1" = the client asked for usage in the stream)
#
# Written with the enqueue (same round trip) for streams only; read by whichever API process a
# client resumes on, to render the record again in the client's own dialect.


@dataclass(frozen=True, slots=True)
class ReplayInfo:
    dialect: str  # api/dialects.py name
    model: str  # the public model name the client asked for
    client: str  # the client key's name: only its owner may resume the stream
    include_usage: bool

    def fields(self) -> dict[str, str]:
        return {"dialect": self.dialect, "model": self.model, "client": self.client,
                "usage": "1" if self.include_usage else "0"}

    @classmethod
    def decode(cls, raw: dict[bytes, bytes]) -> ReplayInfo | None:
        """None for a missing (expired, or never a stream) or incomplete hash."""
        try:
            return cls(raw[b"dialect"].decode(), raw[b"model"].decode(), raw[b"client"].decode(),
                       raw.get(b"usage") == b"1")
        except KeyError:
            return None


def write_replay_info(pipe: Pipeline, key: str, info: ReplayInfo, ttl_seconds: int) -> None:
    """Queues the hash and its expiry on the caller's pipeline."""
    pipe.hset(key, mapping=info.fields())  # type: ignore[arg-type]
    pipe.expire(key, ttl_seconds)


async def read_replay_info(client: aioredis.Redis, key: str) -> ReplayInfo | None:
    return ReplayInfo.decode(await client.hgetall(key))  # type: ignore[misc]
