"""Scripts after their cache is gone (what a promoted replica looks like: Redis 7 does not
replicate the script cache), called alone and queued on a pipeline that spans slots."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from shared.config import QueueSettings
from shared.redis.client import Role, connect
from shared.redis.keys import Keys
from shared.redis.scripts import ClaimCode, LimitArgs, Scripts
from shared.redis.subscription import RESUBSCRIBED, listen
from shared.redis.topology import LocalCluster


def flush_scripts(topology: Any) -> None:
    ports = topology.primary_ports() if isinstance(topology, LocalCluster) else [topology.current_primary()]
    for port in ports:
        with topology.servers.client(port) as c:
            c.script_flush()


@pytest.mark.anyio
async def test_scripts_run_after_every_node_lost_its_cache(topology: Any, redis_url: str) -> None:
    client = connect(redis_url, Role.TOOL)
    keys = Keys("tscripts")
    accounts = [f"acct-{i}" for i in range(6)]  # spread over the Cluster's slots
    try:
        scripts = Scripts(client)
        await scripts.load()
        flush_scripts(topology)
        pipe = client.pipeline(transaction=False)
        for i, account in enumerate(accounts):
            await scripts.enqueue(keys.account(account), f"job-{i}", b"{}", (1, 1), False, 100, pipe=pipe)
        assert await scripts.execute(pipe) == [1] * len(accounts)  # each lane now holds its job

        flush_scripts(topology)
        limits = LimitArgs(0, 0, 0, 0, 4, 0, 0)
        for i, account in enumerate(accounts):
            result = await scripts.claim(keys.account(account), limits, QueueSettings(), 4)
            assert result.code is ClaimCode.CLAIMED and [c[0] for c in result.claimed] == [f"job-{i}"]
    finally:
        for account in accounts:
            k = keys.account(account)
            await client.delete(k.ready, k.jobs, k.meta, k.inflight, k.stats, k.bell, k.rl, k.bready)
        await client.aclose()


@pytest.mark.anyio
async def test_a_fresh_job_behind_a_backlog_nudges_workers_on_either_deployment(topology: Any,
                                                                               redis_url: str) -> None:
    """enqueue.lua publishes the nudge the way workers listen for it: sharded on a Cluster."""
    client = connect(redis_url, Role.TOOL)
    keys = Keys("tnudge").account("acct-nudge")
    heard: asyncio.Queue[bytes | None] = asyncio.Queue()

    async def hear() -> None:
        async for item in listen(client, keys.nudge):
            await heard.put(item)

    task = asyncio.create_task(hear())
    try:
        assert await asyncio.wait_for(heard.get(), 10) is RESUBSCRIBED  # subscribed before the enqueues
        scripts = Scripts(client)
        for job_id in ("big-0", "big-1"):  # into an empty lane, then backlogged: no nudge
            await scripts.enqueue(keys, job_id, b"{}", (1, 1), False, 100, tenant="big")
        await scripts.enqueue(keys, "small-0", b"{}", (1, 1), False, 100, tenant="small")
        assert await asyncio.wait_for(heard.get(), 10) == b"1"
    finally:
        task.cancel()
        await client.delete(keys.ready, keys.jobs, keys.meta, keys.bell)
        await client.aclose()
