"""Every Lua script is called with keys of one hash slot, as a Redis Cluster requires.

Each wrapper (shared/redis/scripts.py, shared/batches/records.py, api/tenancy.py,
shared/tenants/keystore.py) is called against a recording client, with account, request, batch and
tenant names like the real ones; the keys each script got are mapped to their Cluster slots (CRC16,
hash tags included) and must be one slot. A script that publishes sharded (SPUBLISH, on a Cluster)
names its channel in ARGV: the channel must be on that slot too. Every Lua file
must be seen: a new script fails this test until a call of it is added here, so its keys get
checked too.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

import pytest
from redis.crc import key_slot

from api.tenancy import Tenancy
from shared.batches.records import Records
from shared.config import QueueSettings, parse_config
from shared.jobs import Job, encode_job
from shared.model import ChatRequest, Message, Text, Usage
from shared.redis import record
from shared.redis.dlq import DeadLetter, DeadLetters
from shared.redis.handback import HandBack
from shared.redis.idempotency import IdempotencyStore, Original, key_of
from shared.redis.idempotency import _script_source as idempotency_source
from shared.redis.keys import Keys
from shared.redis.moves import Moves
from shared.redis.scripts import LimitArgs, Outcome, Scripts, _source
from shared.tenants.keystore import KeyStore

JOB = Job("0123456789abcdef01234567", "acct", "x", ChatRequest(model="m", messages=[Message("user", [Text("hi")])]),
          "", 0, 1000, 5, 5)
PRELUDE = "limiter"  # not a script of its own: prepended to the others
ANSWERS: dict[str, Any] = {  # a plausible reply per script, so the wrappers can decode it
    "enqueue": 1, "claim": [0, 0, [], []], "ack": 1, "release": 1, "block": 0, "heartbeat": [],
    "learn": 0, "cancel": 1, "batch_done": [0, 0], "batch_feed": b"in_progress",
    "batch_status": [1, b"in_progress"], "batch_lease": [b"|"],
    "tenant_admit": [0, 0], "tenant_settle": 1, "keyring": 1,
    "move_out": 1, "adopt": 1, "move_done": 1, "dead_letter": 1, "dlq_replay": 1, "dlq_purge": 1,
    "handback": 1, "idempotency": None,
}
SHARDED_CHANNEL_IN_ARGV1 = {"keyring"}  # scripts that SPUBLISH on ARGV[1] on a Cluster
TENANTS = ["team-a", "Big Co", "t{x}y", "x"]  # any client key name is a tenant name; braces included


def lua_names() -> set[str]:
    lua = resources.files("shared.redis") / "lua"
    return {p.name.removesuffix(".lua") for p in lua.iterdir() if p.name.endswith(".lua")} - {PRELUDE}


class RecordingScript:
    def __init__(self, owner: Recorder, name: str) -> None:
        self.owner, self.name, self.sha = owner, name, f"sha-{name}"

    async def __call__(self, keys: list[str], args: list[Any], client: Any = None) -> Any:
        self.owner.calls.append((self.name, list(keys)))
        self.owner.args.append((self.name, list(args)))
        return ANSWERS.get(self.name, 0)


class RecordingPipeline:
    """The reads a wrapper batches before its script (a move reads the job's meta): all empty."""

    def __init__(self) -> None:
        self.replies: list[Any] = []

    def hget(self, key: str, field: str) -> None:
        self.replies.append(None)

    def hexists(self, key: str, field: str) -> None:
        self.replies.append(False)

    async def execute(self) -> list[Any]:
        return self.replies


class Recorder:
    """Stands in for the Redis client: records which script ran with which keys."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, list[str]]] = []
        self.args: list[tuple[str, list[Any]]] = []
        self.by_source = {_source(name): name for name in lua_names()}
        self.by_source[idempotency_source()] = "idempotency"  # one key per script: no prelude
        self.sha_names = {record._APPEND_SHA: "append"}  # called by its hash alone
        self.scripts: dict[str, RecordingScript] = {}

    def register_script(self, source: str) -> RecordingScript:
        script = RecordingScript(self, self.by_source[source])
        self.scripts[script.sha] = script
        return script

    def pipeline(self, transaction: bool = True) -> RecordingPipeline:
        return RecordingPipeline()

    async def hget(self, key: str, field: str) -> bytes:  # plain reads around the scripts: not checked
        return encode_job(JOB)

    async def zscore(self, key: str, member: str) -> float:
        return 1.0

    async def delete(self, *keys: str) -> int:
        return 0

    async def evalsha(self, sha: str, count: int, *args: Any) -> Any:  # record.append_now's bare EVALSHA
        name = self.sha_names[sha]
        self.calls.append((name, [str(k) for k in args[:count]]))
        self.args.append((name, list(args[count:])))
        return 0

    def execute_command(self, *args: Any) -> None:  # a pipeline's raw EVALSHA (ack_in_pipeline)
        assert args[0] == "EVALSHA"
        name, count = self.scripts[args[1]].name, int(args[2])
        self.calls.append((name, list(args[3:3 + count])))
        self.args.append((name, list(args[3 + count:])))


@pytest.mark.anyio
@pytest.mark.parametrize("account", ["acct-a", "openai.main_2", "x"])
async def test_every_script_touches_one_slot(account: str) -> None:
    client = Recorder()
    scripts = Scripts(client)  # type: ignore[arg-type]
    records = Records(client, "sluice")  # type: ignore[arg-type]
    keys = Keys("sluice").account(account)
    limits = LimitArgs(60, 1000, 0, 0, 4, 25, 0)
    job = "0123456789abcdef01234567"

    await scripts.enqueue(keys, job, b"{}", (10, 20), False, 100)
    await scripts.claim(keys, limits, QueueSettings(), 4)
    await scripts.ack(keys, limits, job, (10, 5), Outcome.COMPLETED)
    scripts.ack_in_pipeline(client, keys, limits, job, (10, 5), Outcome.COMPLETED, 200, "m")  # type: ignore[arg-type]
    await scripts.release(keys, limits, job, 1000, "upstream_429")
    await scripts.block(keys, 1000)
    await scripts.heartbeat(keys, 30_000, "w1", [job, "other-job"])
    await scripts.learn(keys, {"r": 60})
    await scripts.cancel(keys, job)
    batch = "batch_0123abcd"
    await records.transition(batch, ("validating",), "in_progress", "in_progress_at", total=3)
    await records.mark_done(batch, [(0, "s", 1, 2), (1, "e", 0, 0)])
    await records.fed(batch, 2, [(0, account), (1, account)])
    await records.lease("coordinator-1", 30_000, 4, [batch])
    config = parse_config(f"""
accounts: [{{name: {account}, provider: mock, base_url: "http://127.0.0.1:9/v1"}}]
models: [{{name: m, route: [{{account: {account}, model: x}}], price: {{input: 1, output: 2}}}}]
tenants: [{", ".join(f"{{name: '{t}', rpm: 60, tpm: 1000, concurrency: 2, budget: {{tokens: 10, cost: 1}}}}"
                      for t in TENANTS)}]
""", env={})
    tenancy = Tenancy(config, client, Keys("sluice"))  # type: ignore[arg-type]
    request = ChatRequest(model="m", messages=[Message("user", [Text("hi")])])
    for tenant in TENANTS:
        hold = await tenancy.admit(Job(job, account, "x", request, "", 0, 1000, 5, 5, client=tenant), config.models[0])
        assert hold is not None
        await tenancy.settle(hold, Usage(3, 4), known=True)
    store = KeyStore(client, Keys("sluice"), b"s" * 32)  # type: ignore[arg-type]
    await store.create("team-a")
    await store.revoke("key_0123")
    # append.lua publishes plain, so it is used off a Cluster only (there the writer pipelines XADD + SPUBLISH)
    await record.append_now(client, Keys("sluice").out(job), 1, b"[]", 60, "", b"")  # type: ignore[arg-type]
    moves = Moves(client, Keys("sluice"))  # type: ignore[arg-type]
    assert await moves.move(JOB, account, "sibling.b", lambda j, target: j)  # out of one account, into another:
    dead = DeadLetters(client, Keys("sluice"))  # type: ignore[arg-type]  # three scripts, each one slot
    await dead.dead_letter(keys, DeadLetter(job, account, "why"))
    await dead.replay(account, job, 1000, 0)
    await dead.purge(account, job)
    await HandBack(client)(keys, limits, job, partial=True)  # type: ignore[arg-type]
    idem = IdempotencyStore(client)  # type: ignore[arg-type]
    key = key_of("sluice", "team-a", "retry-1")
    await idem.claim(key, Original(job, "digest"), 60)
    await idem.release(key, job)

    assert {name for name, _ in client.calls} == lua_names(), (
        "a script is not exercised here: add a call of it to this test")
    for name, script_keys in client.calls:
        assert script_keys, f"{name} was called without keys"
        slots = {key_slot(k.encode()) for k in script_keys}
        assert len(slots) == 1, f"{name} touches keys of {len(slots)} slots: {script_keys}"
    published = [(name, args[0]) for name, args in client.args if name in SHARDED_CHANNEL_IN_ARGV1]
    assert published, "no script publishing sharded was called"
    for (name, script_keys), (_, args) in zip(client.calls, client.args, strict=True):
        if name in SHARDED_CHANNEL_IN_ARGV1:
            assert key_slot(str(args[0]).encode()) == key_slot(script_keys[0].encode()), (
                f"{name} publishes on {args[0]!r}, off its keys' slot")


def test_the_reply_channels_are_hash_tagged() -> None:
    """Sharded pub/sub needs each channel on one slot whatever the prefix: the tag is the id."""
    keys = Keys("sluice")
    assert keys.reply_channel("api-1").endswith("{api-1}")
    assert Records(Recorder(), "sluice").channel.endswith("{batcher}")  # type: ignore[arg-type]
