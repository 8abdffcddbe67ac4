"""Every Redis key Sluice uses, built in one place.

Per account (hash tag `{acct}`, so one Lua script can touch them all on one Cluster slot):

    {p}:{acct}:ready      ZSET  job id -> rank (enqueue ms); the account's interactive lane
    {p}:{acct}:bready     ZSET  job id -> rank (enqueue ms); the batch lane (claim.lua picks the lane)
    {p}:{acct}:inflight   ZSET  job id -> lease deadline ms; claimed, not yet acknowledged
    {p}:{acct}:jobs       HASH  job id -> Job (msgspec JSON)
    {p}:{acct}:meta       HASH  job id -> reserved token cost; "<id>:s" -> rank; "<id>:a" -> attempts;
                                "<id>:l" -> 1 for a batch-lane job; "#bc" -> the batch lane's claim credit
    {p}:{acct}:rl         HASH  the account's limiter state (fields: shared/redis/limiter.py)
    {p}:{acct}:bell       LIST  doorbell: one token per enqueue wakes one waiting worker
    {p}:{acct}:dlq        ZSET  job id -> ms when it was dead-lettered
    {p}:{acct}:workers    ZSET  worker id -> last heartbeat ms (liveness for /readyz and status)
    {p}:{acct}:stats      HASH  counters (claimed, completed, failed, requeued, upstream_429)
    {p}:{acct}:dead       HASH  job id -> why it was dead-lettered (shared/redis/dlq.py: DeadLetter)
    {p}:{acct}:moving     HASH  job id -> "<target account>|<hop>|<ms>": left this queue, not yet
                                confirmed on the target (shared/redis/moves.py)
    {p}:{acct}:moved      HASH  job id -> the account it moved to (a cancel follows it there)
    {p}:{acct}:movedat    ZSET  job id -> ms it moved (prunes `moved` after a day)
    {p}:{acct}:nudge      CHANNEL a fresh tenant's job joined a non-empty lane (enqueue.lua): a worker
                                sleeping out a backlogged head's limiter wait claims again at once;
                                sharded on a Cluster, like every channel with a hash tag
    {p}:{acct}:adopted    ZSET  "<job id>:<hop>" -> ms this account took the job in (makes a
                                retried move a no-op; pruned after a day)

Per request (hash tag `{req}`):

    {p}:out:{req}         STREAM  the request's event log; SSE ids point into it (shared/redis/record.py)
    {p}:outmeta:{req}     HASH    how to re-render it for a resuming client (record.py: ReplayInfo)

Per tenant name a client key carries (config or key ring; never the key; shared/redis/stored_responses.py):

    {p}:resp:<client>:{<id>}  STRING  a stored Response (StoredResponse, msgspec JSON), TTL responses.ttl_seconds

Client keys issued at run time (hash tag `{keyring}`: one script changes them all; shared/tenants/keystore.py):

    {p}:{keyring}:keys    HASH    HMAC digest (hex) -> KeyRecord (msgspec JSON); never the key itself
    {p}:{keyring}:ids     HASH    key id -> HMAC digest (hex)
    {p}:{keyring}:version STRING  bumped by every change; API processes poll it as a fallback
    {p}:{keyring}:changed CHANNEL the new version, published by every change (hash-tagged too: on a
                                Cluster keyring.lua publishes it sharded, on the keys' own slot)

Per tenant (hash tag `{tenant:<name>}`: admission and settling are one script each; api/tenancy.py):

    {p}:{tenant:<name>}:rl     HASH  GCRA TATs ("r", "t") of the tenant's rpm / tpm
    {p}:{tenant:<name>}:held   ZSET  request id -> ms its hold lapses (concurrency = its size)
    {p}:{tenant:<name>}:bheld  ZSET  batch line id -> ms its hold lapses (batch lines in flight; not concurrency)
    {p}:{tenant:<name>}:cost   HASH  request id -> "tokens|cost|period[|b]" reserved at admission (b: a batch line)
    {p}:{tenant:<name>}:usage  HASH  "<period>:t" / "<period>:c" -> tokens / cost spent or reserved;
                                     ":n" requests; ":bt" / ":bc" / ":bn" the batch lines' share of them

Per deployment (one key: a job is found there whichever account it runs on, even after a move):

    {p}:cancels           ZSET    job id -> ms from which its worker must abort it (its client
                                  left; api/cancel.py writes, worker/cancel.py reads)

Per API process:

    {p}:reply:{<api id>}  CHANNEL live tap: each stream entry as a reply frame (shared/redis/reply.py);
                                sharded pub/sub on a Cluster (shared/redis/subscription.py)
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class AccountKeys:
    ready: str
    bready: str
    inflight: str
    jobs: str
    meta: str
    rl: str
    bell: str
    dlq: str
    workers: str
    stats: str
    dead: str
    moving: str
    moved: str
    moved_at: str
    adopted: str
    nudge: str  # a channel, not a key


@dataclass(frozen=True, slots=True)
class KeyringKeys:
    keys: str
    ids: str
    version: str
    changed: str  # a channel, not a key


@dataclass(frozen=True, slots=True)
class TenantKeys:
    rl: str
    held: str
    cost: str
    usage: str
    batch_held: str


class Keys:
    def __init__(self, prefix: str = "sluice") -> None:
        self.prefix = prefix
        self._accounts: dict[str, AccountKeys] = {}

    def account(self, name: str) -> AccountKeys:
        keys = self._accounts.get(name)
        if keys is None:
            base = f"{self.prefix}:{{{name}}}"
            keys = AccountKeys(
                ready=f"{base}:ready",
                bready=f"{base}:bready",
                inflight=f"{base}:inflight",
                jobs=f"{base}:jobs",
                meta=f"{base}:meta",
                rl=f"{base}:rl",
                bell=f"{base}:bell",
                dlq=f"{base}:dlq",
                workers=f"{base}:workers",
                stats=f"{base}:stats",
                dead=f"{base}:dead",
                moving=f"{base}:moving",
                moved=f"{base}:moved",
                moved_at=f"{base}:movedat",
                adopted=f"{base}:adopted",
                nudge=f"{base}:nudge",
            )
            self._accounts[name] = keys
        return keys

    def keyring(self) -> KeyringKeys:
        base = f"{self.prefix}:{{keyring}}"
        return KeyringKeys(f"{base}:keys", f"{base}:ids", f"{base}:version", f"{base}:changed")

    def tenant(self, name: str) -> TenantKeys:
        base = f"{self.prefix}:{{tenant:{name}}}"
        return TenantKeys(f"{base}:rl", f"{base}:held", f"{base}:cost", f"{base}:usage", f"{base}:bheld")

    def out(self, request_id: str) -> str:
        return f"{self.prefix}:out:{{{request_id}}}"

    def out_meta(self, request_id: str) -> str:
        return f"{self.prefix}:outmeta:{{{request_id}}}"

    def cancels(self) -> str:
        return f"{self.prefix}:cancels"

    def reply_channel(self, api_id: str) -> str:
        # hash-tagged: on a Cluster the channel is sharded (SPUBLISH/SSUBSCRIBE), so it lives on one shard
        return f"{self.prefix}:reply:{{{api_id}}}"
