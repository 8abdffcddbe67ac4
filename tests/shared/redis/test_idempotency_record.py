"""The Idempotency-Key record and its script, on the session's real Redis."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.redis import idempotency
from shared.redis.client import Role, connect
from shared.redis.idempotency import IdempotencyStore, Original


@given(st.text(alphabet="0123456789abcdef", min_size=1, max_size=24), st.text(min_size=0, max_size=64))
def test_value_round_trips(job_id: str, digest: str) -> None:
    original = Original(job_id, digest)
    assert Original.decode(original.encode().encode()) == original


def test_keys_are_scoped_per_client_and_share_one_hash_tag() -> None:
    a = idempotency.key_of("p", "alice", "k1")
    assert a != idempotency.key_of("p", "bob", "k1") != idempotency.key_of("p", "alice", "k2")
    assert a.startswith("p:idem:{") and a.endswith("}")  # the whole digest is the hash tag


@pytest.mark.anyio
async def test_first_claims_later_ones_see_it_and_release_is_by_job(redis_url: str) -> None:
    client = connect(redis_url, Role.TOOL)
    store = IdempotencyStore(client)
    key = f"t{uuid.uuid4().hex[:10]}:idem:{{k}}"
    try:
        first = Original("job1", "d1")
        assert await store.claim(key, first, 60) is None
        assert await store.claim(key, Original("job2", "d2"), 60) == first
        assert 0 < await client.pttl(key) <= 60_000
        assert not await store.release(key, "job2")  # not the job the key names
        assert not await store.release(key, "job")  # a prefix of its id is not it either
        assert await store.release(key, "job1")
        assert await store.claim(key, Original("job3", "d3"), 60) is None
    finally:
        await client.delete(key)
        await client.aclose()
