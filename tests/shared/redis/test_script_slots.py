"""Every Lua script is called with keys of one hash slot, as a Redis Cluster requires.

Each wrapper (shared/redis/scripts.py, shared/batches/records.py) is called against a recording
client, with account, request and batch names like the real ones; the keys each script got are
mapped to their Cluster slots (CRC16, hash tags included) and must be one slot. Every Lua file
must be seen: a new script fails this test until a call of it is added here, so its keys get
checked too.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

import pytest
from redis.crc import key_slot

from shared.batches.records import Records
from shared.config import QueueSettings
from shared.redis.keys import Keys
from shared.redis.scripts import LimitArgs, Outcome, Scripts, _source

PRELUDE = "limiter"  # not a script of its own: prepended to the others
ANSWERS: dict[str, Any] = {  # a plausible reply per script, so the wrappers can decode it
    "enqueue": 1, "claim": [0, 0, [], []], "ack": 1, "release": 1, "block": 0, "heartbeat": [],
    "learn": 0, "cancel": 1, "batch_done": [0, 0], "batch_feed": b"in_progress",
    "batch_status": [1, b"in_progress"], "batch_lease": [b"|"],
}


def lua_names() -> set[str]:
    lua = resources.files("shared.redis") / "lua"
    return {p.name.removesuffix(".lua") for p in lua.iterdir() if p.name.endswith(".lua")} - {PRELUDE}


class RecordingScript:
    def __init__(self, owner: Recorder, name: str) -> None:
        self.owner, self.name, self.sha = owner, name, f"sha-{name}"

    async def __call__(self, keys: list[str], args: list[Any], client: Any = None) -> Any:
        self.owner.calls.append((self.name, list(keys)))
        return ANSWERS.get(self.name, 0)


class Recorder:
    """Stands in for the Redis client: records which script ran with which keys."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, list[str]]] = []
        self.by_source = {_source(name): name for name in lua_names()}
        self.scripts: dict[str, RecordingScript] = {}

    def register_script(self, source: str) -> RecordingScript:
        script = RecordingScript(self, self.by_source[source])
        self.scripts[script.sha] = script
        return script

    def execute_command(self, *args: Any) -> None:  # a pipeline's raw EVALSHA (ack_in_pipeline)
        assert args[0] == "EVALSHA"
        self.calls.append((self.scripts[args[1]].name, list(args[3:3 + int(args[2])])))


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

    assert {name for name, _ in client.calls} == lua_names(), (
        "a script is not exercised here: add a call of it to this test")
    for name, script_keys in client.calls:
        assert script_keys, f"{name} was called without keys"
        slots = {key_slot(k.encode()) for k in script_keys}
        assert len(slots) == 1, f"{name} touches keys of {len(slots)} slots: {script_keys}"


def test_the_reply_channels_are_hash_tagged() -> None:
    """Sharded pub/sub needs each channel on one slot whatever the prefix: the tag is the id."""
    keys = Keys("sluice")
    assert keys.reply_channel("api-1").endswith("{api-1}")
    assert Records(Recorder(), "sluice").channel.endswith("{batcher}")  # type: ignore[arg-type]
