"""`sluice worker --account NAME`: one process bound to one provider account."""

from __future__ import annotations

import asyncio
import signal

from shared.config import Config
from shared.heap import freeze_startup_heap
from shared.logs import setup_logging
from shared.redis.client import Role, connect
from worker.health import WorkerHealth
from worker.loop import Worker
from worker.providers import provider_for
from worker.upstream import make_transport


async def serve(config: Config, account_name: str, health: tuple[str, int] | None = None) -> None:
    """`health`: (host, port) for the probe endpoint (worker/health.py), or None for none."""
    account = config.account(account_name)
    client = connect(config.redis_url, Role.WORKER, connections=account.limits.concurrency)
    http = make_transport(account)
    worker = Worker(config, account, client, provider_for(account), http)
    probes = WorkerHealth(client, worker.akeys, worker.id, config.queue.lease_seconds)
    if health is not None:
        await probes.start(*health)

    def stop() -> None:
        probes.draining = True  # readiness drops at once; liveness holds while the jobs finish
        worker.stop()

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop)
    freeze_startup_heap()
    try:
        await worker.run()
    finally:
        await probes.close()
        await http.aclose()
        await client.aclose()


def run(config: Config, account_name: str, health: tuple[str, int] | None = None) -> None:
    setup_logging()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(serve(config, account_name, health))
