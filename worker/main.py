"""`sluice worker --account NAME`: one process bound to one provider account."""

from __future__ import annotations

import asyncio
import signal

from shared.config import Config
from shared.heap import freeze_startup_heap
from shared.logs import setup_logging
from shared.redis.client import Role, connect
from worker.loop import Worker
from worker.providers import provider_for
from worker.upstream import make_transport


async def serve(config: Config, account_name: str) -> None:
    account = config.account(account_name)
    client = connect(config.redis_url, Role.WORKER, connections=account.limits.concurrency)
    http = make_transport(account)
    worker = Worker(config, account, client, provider_for(account), http)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, worker.stop)
    freeze_startup_heap()
    try:
        await worker.run()
    finally:
        await http.aclose()
        await client.aclose()


def run(config: Config, account_name: str) -> None:
    setup_logging()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(serve(config, account_name))
