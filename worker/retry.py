"""When and how long to wait before calling the provider again after a retryable fault.

Retryable: 5xx, timeouts, dropped connections and streams that broke before sending anything
(GatewayError.retryable); a 429 is not retried here (the key is blocked and the job re-queued),
and any other 4xx fails at once with the provider's error. A stream is retried only while nothing
of it has reached the client. Backoff doubles from `retry_base_seconds` up to
`retry_max_seconds`, each wait drawn from its upper half (jitter, so the retries of many jobs
that failed together do not arrive together), and no retry starts past the job's deadline.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass

from shared.config import QueueSettings
from shared.errors import GatewayError


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    retries: int
    base: float
    cap: float

    @classmethod
    def of(cls, queue: QueueSettings) -> RetryPolicy:
        return cls(queue.upstream_retries, queue.retry_base_seconds, queue.retry_max_seconds)

    def backoff(self, retry: int) -> float:
        """Seconds to wait before retry number `retry` (0 = the first retry)."""
        ceiling = min(self.cap, self.base * 2**retry)
        return random.uniform(ceiling / 2, ceiling)

    def next_wait(self, err: GatewayError, retry: int, streamed: bool, deadline_ms: int) -> float | None:
        """The wait before retrying after `err`, or None to give up now."""
        if not err.retryable or streamed or retry >= self.retries:
            return None
        wait = self.backoff(retry)
        if deadline_ms and time.time() + wait > deadline_ms / 1000:
            return None
        return wait
