"""A draining worker handing a claimed job back to its queue (handback.lua's typed wrapper)."""

from __future__ import annotations

import redis.asyncio as aioredis

from shared.redis.keys import AccountKeys
from shared.redis.scripts import LimitArgs, source


class HandBack:
    def __init__(self, client: aioredis.Redis) -> None:
        self._script = client.register_script(source("handback"))

    async def __call__(self, keys: AccountKeys, limits: LimitArgs, job_id: str, partial: bool) -> bool:
        """True when the job is queued again (False: its lease was lost meanwhile)."""
        return bool(await self._script(
            keys=[keys.ready, keys.inflight, keys.meta, keys.rl, keys.stats, keys.bell, keys.bready],
            args=[job_id, int(partial), *limits.rates()]))
