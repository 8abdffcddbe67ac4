"""Entry point of `sluice batcher`."""

from __future__ import annotations

import asyncio
import signal

from shared.config import Config
from shared.heap import freeze_startup_heap
from shared.logs import setup_logging
from shared.redis.client import Role, connect
from worker.batcher.coordinator import Coordinator


async def _main(config: Config) -> None:
    client = connect(config.redis_url, Role.TOOL)  # the library's default pool, as before
    coordinator = Coordinator(config, client)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, coordinator.stop)
    freeze_startup_heap()
    try:
        await coordinator.run()
    finally:
        await client.aclose()


def run(config: Config) -> None:
    setup_logging()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(_main(config))
