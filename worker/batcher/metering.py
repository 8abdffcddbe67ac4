"""Batch lines against their tenant's budgets (issue 14). Each line reserves its estimate (the
live reservation: prompt estimate + `max_tokens`, priced with the model's `price`) when it is
fed, and is settled with what it used when its result is written; both are runs of the scripts
live requests use (tenant_admit.lua in its batch mode, tenant_settle.lua), under the tenant's one
hash tag, so concurrent batches and live traffic see each other's reservations and cannot
overspend a budget together.

What is metered: the token and cost budgets, which are money. A tenant's rpm, tpm and
concurrency are not: they shape its interactive traffic, while batch lines run on the accounts'
batch lanes, paced by the accounts' buckets and the feed window (as the providers' batch APIs
have limits of their own, apart from a key's rate limits). Counting a batch's window against
them would lock the tenant's live requests out for as long as a batch runs.

When the budget is spent, feeding stops at the first line that does not fit; the lines before it
run, the rest wait (nothing is dropped or run twice: feeding resumes at that line). They are fed
as soon as room comes back: lines settling for less than they reserved, or the next period
(day/month, UTC). If the completion window ends first, they expire like any unfed line, into the
error file, with the budget named (OpenAI `insufficient_quota`, Gemini `RESOURCE_EXHAUSTED`;
Anthropic's expired result carries no detail). Waiting rather than failing them at once: a daily
budget frees room within a 24 h window, and a batch is asked to finish within its window, not
now. A line whose estimate alone is over the whole budget can never run under it: it fails at
once with the provider's budget error (OpenAI 429 `insufficient_quota`, Anthropic 402
`billing_error`, Gemini 429 `RESOURCE_EXHAUSTED`), so it does not hold up the lines behind it.

Crash safety: a line's hold is keyed by its deterministic request id (`<batch>.<line>`), so the
coordinator that takes over a batch settles what its predecessor reserved; a line fed again keeps
its hold (the script does not charge it twice); results are settled before they are marked done,
so a crash in between re-collects the line and its second settle finds nothing. A hold nobody
settles (its batch deleted, say) lapses like a live one, its reservation spent, once the batch's
completion window and an upstream timeout have passed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import redis.asyncio as aioredis

from api.dispatch import Dispatcher
from shared.batches.records import BatchView, job_id
from shared.config import Budget, Config, Tenant
from shared.embeddings import EmbeddingRequest
from shared.errors import GatewayError
from shared.model import ChatRequest
from shared.redis.keys import Keys
from shared.redis.scripts import source
from shared.tenants.policy import HOLD_MARGIN_SECONDS, USAGE_TTL_SECONDS, cost_of, period_id, seconds_left

BUDGET_RETRY_SECONDS = 5.0  # a batch waiting for budget asks again this often (or when its own lines settle)


@dataclass(frozen=True, slots=True)
class Estimate:
    line: int
    tokens: int
    cost: float


@dataclass(frozen=True, slots=True)
class Used:
    line: int
    tokens_in: int
    tokens_out: int
    model: str  # only read when tokens were used


class BatchMeter:
    def __init__(self, config: Config, client: aioredis.Redis, keys: Keys) -> None:
        self.config = config
        self.keys = keys
        self._admit = client.register_script(source("tenant_admit"))
        self._settle = client.register_script(source("tenant_settle"))

    def tenant(self, view: BatchView) -> Tenant | None:
        """The batch owner's limits; None: not metered (no `tenants:` entry, as for live requests)."""
        return self.config.tenant(view.client)

    def estimate(self, dispatcher: Dispatcher, line: int, requests: list[ChatRequest | EmbeddingRequest]) -> Estimate:
        """What the line's upstream calls reserve, summed (an embeddings line cut into parts)."""
        tokens, cost = 0, 0.0
        for request in requests:
            model = self.config.model(request.model)
            if model is None:
                continue  # the line fails when it is enqueued (the config changed under it)
            input_estimate, output_reserve = dispatcher.reservation(request, model)
            tokens += input_estimate + output_reserve
            cost += cost_of(model, input_estimate, output_reserve)
        return Estimate(line, tokens, cost)

    @staticmethod
    def never_fits(tenant: Tenant, estimate: Estimate) -> bool:
        budget = tenant.budget or Budget()
        return ((budget.tokens is not None and estimate.tokens > budget.tokens)
                or (budget.cost is not None and estimate.cost > budget.cost))

    def refusal(self, tenant: Tenant, waited: bool) -> GatewayError:
        """The budget error for a line: one that never fits, or (`waited`) one whose batch's
        completion window ended while it waited for budget."""
        period = (tenant.budget or Budget()).period
        if waited:
            return GatewayError("quota_exceeded", "This request was not executed before the completion window "
                                f"expired: this key's budget for the {period} was spent.")
        return GatewayError("quota_exceeded", f"This request's token reservation is over this key's whole budget "
                            f"for the {period}.", retry_after=seconds_left(period, time.time()))

    async def admit(self, view: BatchView, tenant: Tenant, estimates: list[Estimate]) -> int:
        """Reserves the longest prefix of `estimates` the budgets have room for; returns its length."""
        if not estimates:
            return 0
        now = time.time()
        budget = tenant.budget or Budget()
        # a line may wait in its lane until the window ends, then run for an upstream timeout
        longest = max((a.timeout_seconds for a in self.config.accounts), default=600.0)
        hold_ms = int((max(0.0, view.expires_at - now) + longest + HOLD_MARGIN_SECONDS) * 1000)
        keys = self.keys.tenant(tenant.name)
        args: list[str | int | float] = [
            "", 0, 0, 0, 0, 0, "0", period_id(budget.period, now),
            budget.tokens if budget.tokens is not None else -1,
            repr(budget.cost if budget.cost is not None else -1.0), hold_ms, USAGE_TTL_SECONDS, "b"]
        for e in estimates:
            args += [job_id(view.id, e.line), e.tokens, repr(e.cost)]
        _, admitted = await self._admit(keys=[keys.rl, keys.batch_held, keys.cost, keys.usage], args=args)
        return int(admitted)

    async def settle(self, view: BatchView, tenant: Tenant, used: list[Used]) -> int:
        """Ends the lines' holds with what they used (0 for a line that failed or never ran: a
        refund); returns how many holds there were."""
        if not used:
            return 0
        args: list[str | int | float] = []
        for u in used:
            model = self.config.model(u.model) if u.tokens_in or u.tokens_out else None
            cost = cost_of(model, u.tokens_in, u.tokens_out) if model is not None else 0.0
            args += [job_id(view.id, u.line), u.tokens_in + u.tokens_out, repr(cost), 0]
        keys = self.keys.tenant(tenant.name)
        return int(await self._settle(keys=[keys.rl, keys.batch_held, keys.cost, keys.usage], args=args))
