"""`python -m bench.micro CASE`: CPU per operation of one hot-path function, for before/after
comparisons that a shared machine's wall clock cannot give.

Each case runs one function N times in this process (against a private redis-server where it
needs Redis) and prints this process's CPU time per operation (`time.process_time`, best of
--repeat runs). For a deterministic figure run it under callgrind twice, with N and 2N
operations, and divide the difference of the instruction counts by N (the fixed cost of start-up
cancels out):

    PYTHONHASHSEED=0 valgrind --tool=callgrind --callgrind-out-file=/dev/null \
        .venv/bin/python -m bench.micro ticket --n 2000 --repeat 1
    (the same with --n 4000)

(`Collected : <instructions>` is on the last line of valgrind's output.) PYTHONHASHSEED=0 makes
both runs hash alike; without it `bench.micro` sets it and re-executes itself, which valgrind
would not follow.

Cases:
    ticket   the API reading one live entry of a job's answer (Ticket.entries: queue -> entry)
    writer   the worker writing one stream event back (EventWriter.send: record + reply frame)
    hub      the API handing one reply frame to its waiter (ReplyHub.deliver)
    command  one Redis command through the API's client, pool checkout included
    command-library  the same on redis-py's own pool (shared/redis/pools.py says what differs)
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

CaseFn = Callable[[int, Any], Awaitable[None]]


async def case_ticket(n: int, _redis: Any) -> None:
    from api.ticket import Ticket
    from shared.jobs import Job
    from shared.model import ChatRequest

    now_ms = int(time.time() * 1000)
    job = Job(id="0" * 24, account="a", upstream_model="m", request=ChatRequest(model="m", messages=[]),
              reply_to="", enqueued_ms=now_ms, deadline_ms=now_ms + 600_000, input_estimate=1, output_reserve=1)
    queue: asyncio.Queue[tuple[int, bytes]] = asyncio.Queue()
    ticket = Ticket(job, queue, None)  # type: ignore[arg-type]  # the dispatcher is only used on a gap
    entries = ticket.entries(15.0)
    payload = b'[{"type":"text","index":0,"text":"Hello "}]'

    async def produce() -> None:
        # Like the hub: one entry at a time, the reader waiting for each (the live stream case).
        for seq in range(1, n + 1):
            queue.put_nowait((seq, payload))
            await asyncio.sleep(0)

    producer = asyncio.create_task(produce())
    for _ in range(n):
        await anext(entries)
    await producer


async def case_writer(n: int, redis_url: Any) -> None:
    from shared.model import TextDelta
    from shared.redis.client import Role, connect
    from worker.writer import EventWriter

    client = connect(redis_url, Role.WORKER, connections=4)
    try:
        writer = EventWriter(client, "{bench}:out:micro", "{bench}:reply:micro", "0" * 24, 0.0, 60)
        events = [TextDelta(0, "Hello ")]
        for _ in range(n):
            await writer.send(list(events))
        await writer.close()
        await client.delete("{bench}:out:micro")
    finally:
        await client.aclose()


async def case_command(n: int, redis_url: Any) -> None:
    from shared.redis.client import Role, connect

    await _one_at_a_time(connect(redis_url, Role.API), n)  # the API's pool; the worker's checks out alike


async def case_command_library(n: int, redis_url: Any) -> None:
    import redis.asyncio as aioredis

    from shared.redis.client import API_CHECKOUT_TIMEOUT_SECONDS, API_MAX_CONNECTIONS

    # the same client on redis-py's own pool, which probes each connection at checkout
    pool = aioredis.BlockingConnectionPool.from_url(redis_url, max_connections=API_MAX_CONNECTIONS,
                                                    timeout=API_CHECKOUT_TIMEOUT_SECONDS)
    await _one_at_a_time(aioredis.Redis.from_pool(pool), n)


async def _one_at_a_time(client: Any, n: int) -> None:
    try:
        await client.set("{bench}:micro", b"x")
        for _ in range(n):  # one at a time, as a lone request sends them: nothing to batch
            await client.get("{bench}:micro")
        await client.delete("{bench}:micro")
    finally:
        await client.aclose()


async def case_hub(n: int, _redis: Any) -> None:
    from api.hub import ReplyHub
    from shared.redis import reply

    hub = ReplyHub(None, "c")  # type: ignore[arg-type]  # deliver() needs no connection
    queue = hub.register("0" * 24)
    frames = [reply.encode(b"0" * 24, seq, b'[{"type":"text","index":0,"text":"Hello "}]') for seq in range(n)]
    for message in frames:
        hub.deliver(message)
        queue.get_nowait()


CASES: dict[str, tuple[CaseFn, bool]] = {"ticket": (case_ticket, False), "writer": (case_writer, True),
                                         "hub": (case_hub, False), "command": (case_command, True),
                                         "command-library": (case_command_library, True)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.micro", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("case", choices=sorted(CASES))
    parser.add_argument("--n", type=int, default=20000, help="operations per run")
    parser.add_argument("--repeat", type=int, default=5, help="runs; the best one is reported")
    args = parser.parse_args(argv)
    if os.environ.get("PYTHONHASHSEED") != "0":  # the same hashing in every run, for callgrind
        os.environ["PYTHONHASHSEED"] = "0"
        os.execv(sys.executable, [sys.executable, "-m", "bench.micro", *(argv or sys.argv[1:])])
    fn, needs_redis = CASES[args.case]
    server = None
    if needs_redis:
        from shared.redis.embedded import EmbeddedRedis
        server = EmbeddedRedis()
    try:
        import uvloop
        runner: Callable[[Awaitable[None]], None] = uvloop.run  # type: ignore[assignment]  # as the services run
    except ImportError:
        runner = asyncio.run  # type: ignore[assignment]
    try:
        best = float("inf")
        for _ in range(args.repeat):
            started = time.process_time()
            runner(fn(args.n, server.url if server else None))
            best = min(best, time.process_time() - started)
        print(f"{args.case}: {1e6 * best / args.n:.2f} µs CPU per operation (best of {args.repeat}, n={args.n})")
    finally:
        if server is not None:
            server.stop()


if __name__ == "__main__":
    main()
