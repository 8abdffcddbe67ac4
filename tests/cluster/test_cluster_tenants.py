"""The tenants work on a Cluster and on Sentinel, through the client factory every process uses:
tenant admission and settling (one script per tenant slot), and the key ring, whose change
notice is published from inside keyring.lua (SPUBLISH on a Cluster, on the ring's own slot) and
heard through shared/redis/subscription.py (SSUBSCRIBE on the owning primary)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis

import api.keysync
from api.auth import ClientKeys
from api.keysync import KeySync
from api.tenancy import Tenancy
from shared.config import parse_config
from shared.errors import GatewayError
from shared.jobs import Job
from shared.model import ChatRequest, Message, Text, Usage
from shared.redis.client import Role, connect
from shared.redis.keys import Keys
from shared.redis.subscription import RESUBSCRIBED, listen
from shared.tenants.keystore import KeyRecord, KeyStore

pytestmark = pytest.mark.anyio
SECRET = b"k" * 32
WAIT_SECONDS = 10.0  # generous: a bound on a wait for an event, never a pause


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    made = connect(redis_url, Role.TOOL)
    yield made
    await made.aclose()


@pytest.fixture
def keys() -> Keys:
    return Keys(f"tten{uuid.uuid4().hex[:8]}")


async def forget(client: aioredis.Redis, keys: Keys, tenants: list[str]) -> None:
    ring = keys.keyring()
    await client.delete(ring.keys, ring.ids, ring.version)
    for name in tenants:
        t = keys.tenant(name)
        await client.delete(t.rl, t.held, t.cost, t.usage)


async def test_tenant_admission_holds_and_settles_on_every_tenants_slot(client: aioredis.Redis, keys: Keys) -> None:
    tenants = [f"team-{i}" for i in range(6)]  # spread over the Cluster's slots
    config = parse_config(f"""
accounts: [{{name: acct, provider: mock, base_url: "http://127.0.0.1:9/v1"}}]
models: [{{name: m, route: [{{account: acct, model: x}}]}}]
tenants: [{", ".join(f"{{name: {t}, concurrency: 1, budget: {{period: day, tokens: 100}}}}" for t in tenants)}]
""", env={})
    tenancy = Tenancy(config, client, keys)
    request = ChatRequest(model="m", messages=[Message("user", [Text("hi")])])

    def job(tenant: str) -> Job:
        return Job(uuid.uuid4().hex, "acct", "x", request, "", 0, 60_000, 5, 5, client=tenant)

    try:
        for tenant in tenants:
            hold = await tenancy.admit(job(tenant), config.models[0])
            assert hold is not None
            with pytest.raises(GatewayError, match="concurrent"):  # the one hold fills it
                await tenancy.admit(job(tenant), config.models[0])
            await tenancy.settle(hold, Usage(3, 4), known=True)
            usage = await tenancy.usage(tenant)
            assert usage["in_flight"] == 0
            (spent,) = usage["periods"].values()  # type: ignore[attr-defined]
            assert spent["tokens"] == 7  # the reservation (10) reconciled to what was used
    finally:
        await forget(client, keys, tenants)


async def test_a_key_ring_change_is_published_where_its_subscribers_listen(
        client: aioredis.Redis, keys: Keys) -> None:
    store = KeyStore(client, keys, SECRET)
    heard: asyncio.Queue[bytes | None] = asyncio.Queue()

    async def subscriber() -> None:
        async for message in listen(client, keys.keyring().changed):
            await heard.put(message)

    task = asyncio.create_task(subscriber())
    try:
        assert await asyncio.wait_for(heard.get(), WAIT_SECONDS) is RESUBSCRIBED
        _, record = await store.create("team-a")
        assert await asyncio.wait_for(heard.get(), WAIT_SECONDS) == b"1"  # the new version
        assert await store.revoke(record.id)
        assert await asyncio.wait_for(heard.get(), WAIT_SECONDS) == b"2"
        assert (await store.snapshot())[0] == 2
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await forget(client, keys, [])


class Watched(ClientKeys):
    """ClientKeys that says when its ring was replaced, so the test waits on that, not on time."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.replaced = asyncio.Event()

    def replace_ring(self, version: int, ring: dict[bytes, KeyRecord]) -> None:
        super().replace_ring(version, ring)
        self.replaced.set()


async def test_an_api_process_learns_a_new_key_from_the_notice_alone(
        client: aioredis.Redis, redis_url: str, keys: Keys, monkeypatch: pytest.MonkeyPatch) -> None:
    """The version poll is pushed out of reach: only the published notice (or the re-check each
    new subscription makes) can bring the key in. The ring is read with the version bracketing it
    (a Cluster client has no MULTI)."""
    monkeypatch.setattr(api.keysync, "POLL_SECONDS", 3600.0)
    other = connect(redis_url, Role.TOOL)  # `sluice keys` or another API process
    clients = Watched([], SECRET)
    sync = KeySync(KeyStore(client, keys, SECRET), clients)
    # Each step is bounded, so a hang fails here, at the step, instead of at the suite's timeout.
    async with asyncio.timeout(WAIT_SECONDS):
        await sync.start()
    try:
        async with asyncio.timeout(WAIT_SECONDS):
            plain, _ = await KeyStore(other, keys, SECRET).create("team-b")
        async with asyncio.timeout(WAIT_SECONDS):
            while clients.name_of(plain) is None:
                clients.replaced.clear()
                await clients.replaced.wait()
        assert clients.name_of(plain) == "team-b"
    finally:
        async with asyncio.timeout(WAIT_SECONDS):
            await sync.stop()  # ends cleanly on every deployment
        await other.aclose()
        await forget(client, keys, [])
