"""CPU per Redis command of the installed redis-py, asyncio client, one server and a Cluster.

    .venv/bin/python -m bench.redis_client                # the pinned redis-py (pyproject.toml)
    python3 -m venv /tmp/r8 && /tmp/r8/bin/pip install 'redis[hiredis]>=8' msgspec
    PYTHONPATH=. /tmp/r8/bin/python -m bench.redis_client # the same rows with redis-py 8

Starts its own redis-server (and a 3-primary Cluster: shared/redis/topology.py) on loopback,
then for each row runs N commands and reports the client process's CPU time per command (the
server's time is not counted): `get` one awaited GET at a time; `get x32` 32 tasks at once;
`pipeline` a 4-command pipeline (XADD + EXPIRE + PUBLISH + EVALSHA, what a worker's stream
write sends), per command; `evalsha` a script call (Script object). Best of `--rounds` rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import redis
import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, RedisCluster

from shared.redis.embedded import EmbeddedRedis
from shared.redis.topology import LocalCluster, modern_redis_binary

SCRIPT = "return redis.call('HINCRBY', KEYS[1], 'n', 1)"


async def measure(n: int, body: Callable[[], Awaitable[int]]) -> float:
    """µs of this process's CPU per command, over `n` commands' worth of `body` calls."""
    done = 0
    start = time.process_time()
    while done < n:
        done += await body()
    return (time.process_time() - start) / done * 1e6


async def rows(client: Any, cluster: bool, n: int) -> dict[str, float]:
    script = client.register_script(SCRIPT)
    await client.set("k{a}", "v")
    await script(keys=["c{a}"], args=[])
    out: dict[str, float] = {}

    async def one_get() -> int:
        await client.get("k{a}")
        return 1

    async def many_gets() -> int:
        await asyncio.gather(*(client.get("k{a}") for _ in range(32)))
        return 32

    seq = [0]

    async def pipeline() -> int:
        seq[0] += 1
        pipe = client.pipeline(transaction=False)
        pipe.xadd("s{a}", {"d": "x"}, maxlen=1000, approximate=True)
        pipe.expire("s{a}", 60)
        if cluster:
            pipe.execute_command("SPUBLISH", "ch{a}", "x")
        else:
            pipe.publish("ch{a}", "x")
        pipe.execute_command("EVALSHA", script.sha, 1, "c{a}")
        await pipe.execute()
        return 4

    async def evalsha() -> int:
        await script(keys=["c{a}"], args=[])
        return 1

    for name, body in (("get", one_get), ("get x32", many_gets), ("pipeline", pipeline), ("evalsha", evalsha)):
        await measure(n // 10, body)  # warm up
        out[name] = await measure(n, body)
    return out


async def run(args: argparse.Namespace) -> None:
    server = EmbeddedRedis()
    cluster = LocalCluster() if modern_redis_binary() else None
    try:
        results: dict[str, dict[str, float]] = {}
        targets: list[tuple[str, Callable[[], Any], bool]] = [
            ("one server", lambda: aioredis.Redis.from_url(server.url), False)]
        if cluster is not None:
            nodes = [ClusterNode("127.0.0.1", p) for p in cluster.ports]
            targets.append(("cluster", lambda: RedisCluster(  # type: ignore[abstract]
                startup_nodes=nodes, reinitialize_steps=0), True))
        for label, make, is_cluster in targets:
            best: dict[str, float] = {}
            for _ in range(args.rounds):
                client = make()
                try:
                    for row, value in (await rows(client, is_cluster, args.n)).items():
                        best[row] = min(best.get(row, value), value)
                finally:
                    await client.aclose()
            results[label] = best
        print(f"redis-py {redis.__version__}, hiredis {'yes' if redis.utils.HIREDIS_AVAILABLE else 'no'}, "
              f"{args.n} commands a row, best of {args.rounds}: CPU µs per command")
        names = list(next(iter(results.values())))
        print("| deployment | " + " | ".join(names) + " |")
        print("|---|" + "---|" * len(names))
        for label, values in results.items():
            print(f"| {label} | " + " | ".join(f"{values[n]:.0f}" for n in names) + " |")
    finally:
        server.stop()
        if cluster is not None:
            cluster.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=20_000, help="commands per row")
    parser.add_argument("--rounds", type=int, default=3)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
