"""redis-server restarted mid-run (AOF on, same port and directory): no queued job, lease or
record is lost, the API and the workers reconnect, and every client is answered in full."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import openai
import redis

from shared.redis.embedded import EmbeddedRedis
from tests.conftest import CLIENT_KEY, SluiceSystem, wait_until

MESSAGES: Any = [{"role": "user", "content": "count the sheep"}]
REQUESTS = 60


def test_a_redis_restart_mid_run_loses_nothing_and_every_client_is_answered(tmp_path: Path) -> None:
    own = EmbeddedRedis(appendonly=True)  # this test restarts its Redis: not the session's
    accounts = [{"name": n, "limits": {"concurrency": 4}} for n in ("acct-a", "acct-b")]
    models = [{"name": "m", "route": [{"account": "acct-a", "model": "x"}, {"account": "acct-b", "model": "x"}]}]
    system = SluiceSystem(tmp_path, own.url, accounts=accounts, models=models,
                          queue={"lease_seconds": 3, "max_wait_seconds": 120},
                          mock_args=["--tokens-per-second", "40", "--output-tokens", "20"])  # ~0.5 s a job
    try:
        direct = openai.OpenAI(base_url=f"{system.mock_url}/v1", api_key="x", max_retries=0)
        want = direct.chat.completions.create(model="x", messages=MESSAGES).choices[0].message.content
        # the SDK retries a 503 (what Sluice answers while Redis is down) after its Retry-After
        client = openai.OpenAI(base_url=f"{system.base_url}/v1", api_key=CLIENT_KEY, max_retries=10, timeout=120)

        def one(i: int) -> str | None:
            if i % 2:
                return client.chat.completions.create(model="m", messages=MESSAGES).choices[0].message.content
            chunks = client.chat.completions.create(model="m", messages=MESSAGES, stream=True)
            return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)

        probe = redis.Redis.from_url(own.url)
        ready = [f"{system.prefix}:{{{a}}}:ready" for a in ("acct-a", "acct-b")]
        with ThreadPoolExecutor(REQUESTS) as pool:
            futures = [pool.submit(one, i) for i in range(REQUESTS)]
            wait_until(lambda: sum(probe.zcard(k) for k in ready) >= 10, what="a queue to build up")
            queued = sum(probe.zcard(k) for k in ready)
            probe.close()
            own.restart()  # SIGTERM (the AOF is fsynced), then the same port and directory again
            results = [f.result(timeout=120) for f in futures]
        assert queued >= 10
        assert results == [want] * REQUESTS, "every client answered, complete, nothing doubled"
        assert all(c.alive() for c in system.system.children), "a process died instead of waiting for Redis"
        for worker in system.system.of_role("worker"):  # waited with backoff, did not spin
            assert worker.log_path is not None
            pauses = worker.log_path.read_text().count("claiming paused")
            assert pauses < 20, f"{worker.label} retried {pauses} times during one restart"
        after = redis.Redis.from_url(own.url)
        completed = sum(int(after.hget(f"{system.prefix}:{{{a}}}:stats", "completed") or 0)
                        for a in ("acct-a", "acct-b"))
        after.close()
        assert completed >= REQUESTS  # the counters, too, survived the restart
        print(f"\n{REQUESTS} requests, {queued} queued at the restart, all answered in full")
    finally:
        system.close()
        own.stop()
