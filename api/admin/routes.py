"""`/admin/…` routes. Every one needs the admin token; none ever shows a provider key, a client
key (except the new one, once, in the answer that made it) or a secret."""

from __future__ import annotations

import time
from typing import Any

import msgspec
from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from pydantic import BaseModel, Field

from api.admin.auth import require_admin
from api.state import AppState, state_of
from shared.batches.records import ACTIVE, BatchView, Records
from shared.jobs import decode_job
from shared.redis.dlq import DeadLetters
from shared.status import collect
from shared.tenants.keystore import KeyRecord, KeyStore

router = APIRouter(prefix="/admin", tags=["admin"], dependencies=[Depends(require_admin)])

MAX_EXPIRY_SECONDS = 10 * 365 * 86400
DLQ_PAGE = 100
BATCH_PAGE = 100


class KeyInfo(BaseModel):
    id: str
    tenant: str
    source: str = Field(description="'runtime' (issued through this API or the CLI) or 'config'")
    created_ms: int = 0
    expires_ms: int = Field(default=0, description="0: never")
    live: bool = True
    hint: str = Field(default="", description="the key's last four characters")
    rotated_to: str = ""

    @classmethod
    def of(cls, record: KeyRecord, now_ms: float) -> KeyInfo:
        return cls(id=record.id, tenant=record.tenant, source="runtime", created_ms=record.created_ms,
                   expires_ms=record.expires_ms, live=record.live(now_ms), hint=record.hint,
                   rotated_to=record.rotated_to)


class NewKey(BaseModel):
    key: str = Field(description="the plain key: shown only in this answer, never stored")
    info: KeyInfo


class CreateKey(BaseModel):
    tenant: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.-]+$")
    expires_in_seconds: float | None = Field(None, gt=0, le=MAX_EXPIRY_SECONDS)


class RotateKey(BaseModel):
    overlap_seconds: float = Field(default=3600.0, ge=0, le=MAX_EXPIRY_SECONDS,
                                   description="how long the old key keeps working")


class ExpireKey(BaseModel):
    in_seconds: float = Field(ge=0, le=MAX_EXPIRY_SECONDS, description="0: now")


class DeadLetter(BaseModel):
    id: str
    dead_ms: int
    client: str = Field(default="", description="the tenant (client key name) that sent it")
    model: str = ""
    reason: str = Field(default="", description="what failed, for the operator")
    kind: str = Field(default="", description="the error kind its client was answered with")
    status: int = Field(default=0, description="the last upstream HTTP status (0: none)")
    attempts: int = 0


class BatchInfo(BaseModel):
    id: str
    dialect: str
    tenant: str
    endpoint: str
    model: str = ""
    status: str
    created_at: int
    total: int = 0
    succeeded: int = 0
    errored: int = 0
    cancelled: int = 0
    expired: int = 0
    coordinator: str = Field(default="", description="the `sluice batcher` holding it now ('' for none)")
    budget_wait: int = Field(default=0, description="when feeding last stopped on the tenant's budget (unix s; "
                             "0: it is not waiting): its remaining lines wait for room or the next period")

    @classmethod
    def of(cls, view: BatchView, coordinator: str) -> BatchInfo:
        return cls(id=view.id, dialect=view.dialect, tenant=view.client, endpoint=view.endpoint, model=view.model,
                   status=view.status, created_at=view.created_at, total=view.total, succeeded=view.n_s,
                   errored=view.n_e, cancelled=view.n_c, expired=view.n_x, coordinator=coordinator,
                   budget_wait=view.budget_wait)


def _store(state: AppState) -> KeyStore:
    if state.keystore is None:
        raise HTTPException(409, "Keys cannot be issued at run time without a shared key secret: "
                                 "set SLUICE_KEY_SECRET (or a secret file) on every API process.")
    return state.keystore


@router.get("/keys", response_model=list[KeyInfo])
async def list_keys(request: Request) -> list[KeyInfo]:
    state = state_of(request)
    now = time.time() * 1000
    listed = [KeyInfo(id=f"config:{i}", tenant=k.name, source="config") for i, k in enumerate(state.config.client_keys)]
    if state.keystore is not None:
        listed += [KeyInfo.of(r, now) for r in await state.keystore.all()]
    return listed


@router.post("/keys", response_model=NewKey, status_code=201)
async def create_key(body: CreateKey, request: Request) -> NewKey:
    plain, record = await _store(state_of(request)).create(body.tenant, body.expires_in_seconds)
    return NewKey(key=plain, info=KeyInfo.of(record, time.time() * 1000))


@router.post("/keys/{key_id}/rotate", response_model=NewKey, status_code=201)
async def rotate_key(key_id: str, body: RotateKey, request: Request) -> NewKey:
    made = await _store(state_of(request)).rotate(key_id, body.overlap_seconds)
    if made is None:
        raise HTTPException(404, "No such key.")
    return NewKey(key=made[0], info=KeyInfo.of(made[1], time.time() * 1000))


@router.post("/keys/{key_id}/expire", response_model=KeyInfo)
async def expire_key(key_id: str, body: ExpireKey, request: Request) -> KeyInfo:
    now = time.time() * 1000
    record = await _store(state_of(request)).expire(key_id, int(now + body.in_seconds * 1000))
    if record is None:
        raise HTTPException(404, "No such key.")
    return KeyInfo.of(record, now)


@router.delete("/keys/{key_id}", status_code=204)
async def revoke_key(key_id: str, request: Request) -> Response:
    if not await _store(state_of(request)).revoke(key_id):
        raise HTTPException(404, "No such key.")
    return Response(status_code=204)


async def _tenant_names(state: AppState) -> set[str]:
    """Every tenant the config sets limits for, and every tenant a key (config or run time) names."""
    names = {t.name for t in state.config.tenants} | {k.name for k in state.config.client_keys}
    if state.keystore is not None:
        names |= {r.tenant for r in await state.keystore.all()}
    return names


@router.get("/tenants")
async def tenants(request: Request) -> list[dict[str, Any]]:
    """Every tenant the config sets limits for, and every tenant a key names: its limits and usage."""
    state = state_of(request)
    return [await _tenant_report(state, name) for name in sorted(await _tenant_names(state))]


@router.get("/tenants/{name}")
async def tenant(name: str, request: Request) -> dict[str, Any]:
    return await _tenant_report(state_of(request), name)


async def _tenant_report(state: AppState, name: str) -> dict[str, Any]:
    policy = state.config.tenant(name)
    report: dict[str, Any] = {"tenant": name, "limits": msgspec.to_builtins(policy) if policy else None}
    if state.tenancy is not None:
        report.update(await state.tenancy.usage(name))
    return report


@router.get("/accounts")
async def accounts(request: Request) -> dict[str, Any]:
    """Per account: limits, what its buckets hold now, blocks, queue, in flight, counters."""
    state = state_of(request)
    return await collect(state.config, state.redis)


@router.get("/queues")
async def queues(request: Request) -> dict[str, Any]:
    state = state_of(request)
    report = await collect(state.config, state.redis)
    return {a["account"]: {"queue": a["queue"], "in_flight": a["in_flight"], "dead_letters": a["dead_letters"]}
            for a in report["accounts"]}


@router.get("/batches", response_model=list[BatchInfo])
async def batches(request: Request, tenant: str | None = Query(None, max_length=128),
                  active: bool = Query(False, description="only batches not yet ended"),
                  limit: int = Query(BATCH_PAGE, ge=1, le=1000)) -> list[BatchInfo]:
    """Batches newest first: one tenant's, or every known tenant's (keys in the config or issued at
    run time), with their status, counts and the coordinator holding each."""
    state = state_of(request)
    records = Records(state.redis, state.config.key_prefix)
    owners = [tenant] if tenant is not None else sorted(await _tenant_names(state))
    ids: list[tuple[float, str]] = []
    for owner in owners:
        ids += [(score, raw.decode()) for raw, score in
                await state.redis.zrange(records.batch_list(owner), 0, limit - 1, desc=True, withscores=True)]
    ids.sort(reverse=True)
    out: list[BatchInfo] = []
    for _, batch_id in ids:
        view = await records.batch(batch_id)
        if view is None or (active and view.status not in ACTIVE):
            continue
        holder = await state.redis.hget(records.holder, batch_id)  # type: ignore[misc]
        out.append(BatchInfo.of(view, holder.decode() if holder else ""))
        if len(out) == limit:
            break
    return out


@router.get("/dead-letters/{account}", response_model=list[DeadLetter])
async def dead_letters(account: str, request: Request,
                       limit: int = Query(DLQ_PAGE, ge=1, le=1000)) -> list[DeadLetter]:
    """The account's dead letters, oldest first: why each died (shared/redis/dlq.py) and whose it was."""
    state = state_of(request)
    dlq = _dead_letters(state, account)
    letters = (await dlq.list(account))[:limit]
    jobs = state.dispatcher.keys.account(account).jobs
    payloads = await state.redis.hmget(jobs, [d.job_id for d in letters]) if letters else []  # type: ignore[misc]
    out = []
    for letter, payload in zip(letters, payloads, strict=True):
        try:
            job = decode_job(payload) if payload else None
        except msgspec.DecodeError:
            job = None
        out.append(DeadLetter(id=letter.job_id, dead_ms=letter.dead_ms, client=job.client if job else "",
                              model=job.request.model if job else letter.model, reason=letter.reason,
                              kind=letter.kind, status=letter.status, attempts=letter.attempts))
    return out


@router.post("/dead-letters/{account}/{job_id}/replay", status_code=202)
async def replay_dead_letter(account: str, job_id: str, request: Request) -> dict[str, str]:
    """Queues a dead job again with a fresh wait; its answer lands in its record (`sluice dlq replay`)."""
    state = state_of(request)
    wait_ms = int(state.config.queue.max_wait_seconds * 1000)
    if not await _dead_letters(state, account).replay(account, job_id, wait_ms, int(time.time() * 1000)):
        raise HTTPException(404, "No such dead letter.")
    return {"id": job_id, "status": "queued"}


@router.delete("/dead-letters/{account}/{job_id}", status_code=204)
async def purge_dead_letter(account: str, job_id: str, request: Request) -> Response:
    """Drops a dead job and its record of why (`sluice dlq purge`)."""
    state = state_of(request)
    if not await _dead_letters(state, account).purge(account, job_id):
        raise HTTPException(404, "No such dead letter.")
    return Response(status_code=204)


def _dead_letters(state: AppState, account: str) -> DeadLetters:
    if account not in {a.name for a in state.config.accounts}:
        raise HTTPException(404, "No such account.")
    return DeadLetters(state.redis, state.dispatcher.keys)
