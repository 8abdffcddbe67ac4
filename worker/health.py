"""`sluice worker --health-port N`: the worker's probe endpoint (Kubernetes liveness and readiness).

A worker has no HTTP server of its own, and an exec probe would start a Python interpreter every
few seconds per pod, so this is a few lines of asyncio on the worker's own event loop:

- `GET /healthz` -> 200 whenever the loop answers. That is the liveness question ("restart me?"):
  a wedged loop cannot answer. Redis being away is not a reason to restart a worker (it outlives a
  Redis restart and keeps the jobs it runs), so liveness does not ask Redis.
- `GET /readyz` -> 200 when Redis answers and this worker's own heartbeat (heartbeat.lua's entry
  in the account's `workers` set) is fresher than a lease plus a second on Redis's clock; 503 with
  the reason otherwise, and 503 `draining` from the moment SIGTERM arrives, so a rollout waits for
  a replacement that can claim before it counts this one gone.
"""

from __future__ import annotations

import asyncio
import contextlib

import orjson
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from shared.redis.keys import AccountKeys

# A probe's answer must come back well inside Kubernetes' default probe timeout (1 s).
REDIS_TIMEOUT_SECONDS = 0.8


class WorkerHealth:
    """Serves /healthz and /readyz for one worker process until `close()`."""

    def __init__(self, client: aioredis.Redis, akeys: AccountKeys, worker_id: str, lease_seconds: float) -> None:
        self.redis = client
        self.akeys = akeys
        self.worker_id = worker_id
        self.fresh_ms = int(lease_seconds * 1000) + 1000  # three missed heartbeats and a second
        self.draining = False
        self._server: asyncio.Server | None = None

    async def start(self, host: str, port: int) -> int:
        """Listens on host:port (0: any free port) and returns the bound port."""
        self._server = await asyncio.start_server(self._serve, host, port)
        return int(self._server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def readiness(self) -> tuple[int, dict[str, object]]:
        if self.draining:
            return 503, {"status": "draining"}
        try:
            pipe = self.redis.pipeline(transaction=False)
            pipe.zscore(self.akeys.workers, self.worker_id)
            pipe.time()
            beat, (seconds, micros) = await asyncio.wait_for(pipe.execute(), REDIS_TIMEOUT_SECONDS)
        except (TimeoutError, RedisError, OSError):
            return 503, {"status": "unavailable", "redis": False}
        if beat is None:
            return 503, {"status": "no_heartbeat", "redis": True}
        age_ms = int(seconds) * 1000 + int(micros) // 1000 - int(beat)
        if age_ms > self.fresh_ms:
            return 503, {"status": "heartbeat_stale", "redis": True, "age_ms": age_ms}
        return 200, {"status": "ready", "redis": True, "age_ms": max(0, age_ms)}

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), 5)
            while (await asyncio.wait_for(reader.readline(), 5)) not in (b"\r\n", b"\n", b""):
                pass  # headers: nothing in them matters here
            parts = line.split()
            status: int
            body: dict[str, object]
            path = parts[1].split(b"?", 1)[0] if len(parts) >= 2 else b""
            if parts[:1] != [b"GET"]:
                status, body = 405, {"status": "method_not_allowed"}
            elif path == b"/healthz":
                status, body = 200, {"status": "ok"}
            elif path == b"/readyz":
                status, body = await self.readiness()
            else:
                status, body = 404, {"status": "not_found"}
            payload = orjson.dumps(body)
            reason = {200: b"OK", 404: b"Not Found", 405: b"Method Not Allowed", 503: b"Service Unavailable"}[status]
            writer.write(b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
                         b"connection: close\r\n\r\n%s" % (status, reason, len(payload), payload))
            await writer.drain()
        except (TimeoutError, OSError, ValueError, asyncio.IncompleteReadError):
            pass  # a probe that hung up or stalled: nothing to answer
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
