"""Per-tenant admission: allowed models, rpm, tpm, concurrency and budgets, checked and reserved
in one run of tenant_admit.lua before a job is queued, settled with what it really used when its
ticket is released (tenant_settle.lua).

Tenants are the names client keys carry; a tenant without a `tenants:` entry in the config has
no limits here, and costs nothing on the request path.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from enum import Enum, IntEnum

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from shared.config import Config, Model, Tenant
from shared.embeddings import EmbeddingComplete, decode_embedding_events
from shared.errors import GatewayError
from shared.jobs import Job
from shared.model import TERMINAL_EVENTS, Complete, StreamError, Usage, UsageEvent
from shared.redis import record
from shared.redis.keys import Keys, TenantKeys
from shared.redis.record import decode_events
from shared.redis.scripts import source
from shared.tenants.policy import Admission, allows, cost_of, seconds_left

log = logging.getLogger("sluice.api")

# usage hash fields (shared/redis/keys.py); the batch_ ones are the batch lines' share of the others
USAGE_FIELDS = {"t": "tokens", "c": "cost", "n": "requests",
                "bt": "batch_tokens", "bc": "batch_cost", "bn": "batch_requests"}
RECORD_TAIL = 3  # the last entries of a finished record hold its usage
SETTLE_POLL_MS = 5000


class TenantCode(IntEnum):
    """tenant_admit.lua's answer."""

    ADMITTED = 0
    RATE = 1
    CONCURRENCY = 2
    TOKEN_BUDGET = 3
    COST_BUDGET = 4


@dataclass(slots=True)
class Hold:
    """What one admitted request holds of its tenant's limits until it is settled."""

    tenant: Tenant
    keys: TenantKeys
    model: Model
    job: Job
    lapses_at: float  # time.time() past which the script has forgotten the hold anyway


class Tenancy:
    def __init__(self, config: Config, client: aioredis.Redis, keys: Keys) -> None:
        self.config = config
        self.redis = client
        self.keys = keys
        self._admit = client.register_script(source("tenant_admit"))
        self._settle = client.register_script(source("tenant_settle"))
        self._settling: set[asyncio.Task[None]] = set()

    def allows(self, tenant_name: str, model: str) -> bool:
        return allows(self.config, tenant_name, model)

    async def admit(self, job: Job, model: Model) -> Hold | None:
        """Reserves the job's share of its tenant's limits, or raises the error for the one it is over."""
        tenant = self.config.tenant(job.client)
        if tenant is None:
            return None
        now = time.time()
        hold_seconds = (job.deadline_ms - job.enqueued_ms) / 1000 + self.config.account(job.account).timeout_seconds
        admission = Admission.of(tenant, model, job.input_estimate, job.output_reserve, hold_seconds, now)
        keys = self.keys.tenant(tenant.name)
        code, wait_ms = await self._admit(keys=[keys.rl, keys.held, keys.cost, keys.usage],
                                          args=admission.args(job.id))
        code = TenantCode(int(code))
        if code is TenantCode.ADMITTED:
            return Hold(tenant, keys, model, job, now + admission.hold_ms / 1000)
        raise self._refusal(tenant, code, int(wait_ms), now)

    @staticmethod
    def _refusal(tenant: Tenant, code: TenantCode, wait_ms: int, now: float) -> GatewayError:
        if code is TenantCode.RATE:
            return GatewayError("rate_limited", "Rate limit reached for this key (requests or tokens per minute); "
                                "retry later.", retry_after=max(1.0, wait_ms / 1000))
        if code is TenantCode.CONCURRENCY:
            return GatewayError("rate_limited", "Too many concurrent requests for this key; retry when one "
                                "finishes.", retry_after=1.0)
        period = tenant.budget.period if tenant.budget else "month"
        what = "token" if code is TenantCode.TOKEN_BUDGET else "cost"
        return GatewayError("quota_exceeded", f"This key's {what} budget for the {period} is spent.",
                            retry_after=seconds_left(period, now))

    def settle_soon(self, hold: Hold, used: Usage | None = None, known: bool = False) -> None:
        """Settles in the background: the answer has gone, its client need not wait for this."""
        task = asyncio.ensure_future(self.settle(hold, used, known))
        self._settling.add(task)
        task.add_done_callback(self._settling.discard)

    async def settle(self, hold: Hold, used: Usage | None = None, known: bool = False) -> None:
        """`known`: `used` is the final usage (None: nothing used); otherwise it is read from the record."""
        try:
            if not known:
                used, known = await self._final_usage(hold)
            tokens = -1 if not known else (used.input_tokens + used.output_tokens if used else 0)
            cost = cost_of(hold.model, used.input_tokens, used.output_tokens) if used else 0.0
            keys = hold.keys
            await self._settle(keys=[keys.rl, keys.held, keys.cost, keys.usage],
                               args=[hold.job.id, tokens, repr(cost), hold.tenant.tpm or 0])
        except (RedisError, OSError):
            log.warning("tenant settle failed; the hold lapses on its own", extra={"request_id": hold.job.id})

    async def _final_usage(self, hold: Hold) -> tuple[Usage | None, bool]:
        """(usage, known) from the job's record; waits for a job still running (its client left a
        stream) until its hold lapses. A job that never ran (withdrawn, expired) used nothing."""
        key = self.keys.out(hold.job.id)
        last_seq = 0
        entries = await record.read_last(self.redis, key, RECORD_TAIL)
        read = _embedding_ending_of if hold.job.embedding is not None else _ending_of
        while True:
            ending, usage = read(entries)
            if ending is Ending.USED:
                return usage, True
            if ending is Ending.FAILED:
                return None, True
            if ending is Ending.UNSAID:
                return None, False
            if entries:
                last_seq = max(last_seq, max(seq for seq, _ in entries))
            elif not await self.redis.hexists(self.keys.account(hold.job.account).jobs, hold.job.id):  # type: ignore[misc]
                return None, True  # no record and no job: it never ran
            if time.time() >= hold.lapses_at:
                return None, False
            entries = await record.read_after(self.redis, key, last_seq, 256, SETTLE_POLL_MS)

    async def usage(self, tenant_name: str) -> dict[str, object]:
        """What the tenant has spent (and has reserved) per period, its batch lines' share apart,
        and what it holds now."""
        keys = self.keys.tenant(tenant_name)
        pipe = self.redis.pipeline(transaction=False)
        pipe.hgetall(keys.usage)
        pipe.zcard(keys.held)
        pipe.zcard(keys.batch_held)
        raw, held, batch_held = await pipe.execute()
        periods: dict[str, dict[str, float]] = {}
        for field, value in raw.items():
            period, _, what = field.decode().rpartition(":")
            name = USAGE_FIELDS.get(what, what)
            periods.setdefault(period, {})[name] = float(value)
        return {"tenant": tenant_name, "in_flight": int(held), "batch_lines_in_flight": int(batch_held),
                "periods": periods}


class Ending(Enum):
    """How a record's last entries say its job ended, for settling."""

    RUNNING = "running"  # no terminal event yet
    USED = "used"  # ended and said what it used
    FAILED = "failed"  # ended in an error without usage: nothing to charge
    UNSAID = "unsaid"  # ended without saying what it used: the reservation stays spent


def _ending_of(entries: list[record.Entry]) -> tuple[Ending, Usage | None]:
    usage: Usage | None = None
    ending = Ending.RUNNING
    for _, payload in entries:
        for event in decode_events(payload):
            if isinstance(event, Complete):
                usage, ending = event.response.usage, Ending.USED
            elif isinstance(event, UsageEvent):
                usage = event.usage
            elif isinstance(event, StreamError):
                ending = Ending.FAILED
            elif isinstance(event, TERMINAL_EVENTS):
                ending = Ending.UNSAID
    if ending is not Ending.RUNNING and usage is not None:
        return Ending.USED, usage
    return ending, None


def _embedding_ending_of(entries: list[record.Entry]) -> tuple[Ending, Usage | None]:
    """An embedding part's record is one entry in its own event set (shared/embeddings.py)."""
    for _, payload in entries:
        for event in decode_embedding_events(payload):
            if isinstance(event, EmbeddingComplete):
                return Ending.USED, Usage(input_tokens=event.response.input_tokens)
            return Ending.FAILED, None
    return Ending.RUNNING, None
