"""The admin API's read side: accounts with their buckets and blocks, queues, dead letters,
the OpenAPI schema, and /metrics behind the admin token when the config asks for it."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest
import redis
from starlette.testclient import TestClient

from api.app import create_app
from shared.config import parse_config
from shared.jobs import Job, encode_job
from shared.model import ChatRequest, Message, Text
from shared.redis import dlq
from shared.redis.client import connect_sync
from shared.redis.keys import Keys

Admin = tuple[TestClient, str, redis.Redis]  # the app, its key prefix, a client on its Redis
ADMIN = "admin-token-0123456789abcdef"
AUTH = {"authorization": f"Bearer {ADMIN}"}
PROVIDER_KEY = "sk-provider-secret-must-not-show-0001"


@pytest.fixture
def admin(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Admin]:
    monkeypatch.setenv("SLUICE_ADMIN_TOKEN", ADMIN)
    monkeypatch.setenv("UPSTREAM_KEY", PROVIDER_KEY)
    prefix = f"t{uuid.uuid4().hex[:10]}"
    config = parse_config(f"""
redis_url: {redis_url}
key_prefix: {prefix}
client_keys: [{{name: tester, key: sk-client}}]
accounts:
  - {{name: acct, provider: openai, base_url: "http://127.0.0.1:9/v1", api_key: "${{UPSTREAM_KEY}}",
      limits: {{rpm: 60, concurrency: 4}}}}
models: [{{name: m, route: [{{account: acct, model: gpt-x}}]}}]
security: {{metrics_token: true}}
""")
    store = connect_sync(redis_url)
    with TestClient(create_app(config)) as client:
        yield client, prefix, store
    keys = list(store.scan_iter(match=f"{prefix}:*"))
    if keys:
        store.delete(*keys)
    store.close()  # type: ignore[no-untyped-call]


def test_accounts_show_limits_buckets_and_blocks_but_never_the_provider_key(admin: Admin) -> None:
    client, prefix, store = admin
    store.hset(f"{prefix}:{{acct}}:rl", "blocked", str(int(time.time() * 1000) + 30_000))
    answer = client.get("/admin/accounts", headers=AUTH)
    assert answer.status_code == 200
    (acct,) = answer.json()["accounts"]
    assert acct["limits"] == {"rpm": 60, "tpm": None, "concurrency": 4}
    assert 25 < acct["blocked_for_s"] <= 30
    assert PROVIDER_KEY not in answer.text
    queues = client.get("/admin/queues", headers=AUTH).json()
    assert queues["acct"]["queue"] == {"interactive": 0, "batch": 0}


def test_dead_letters_list_each_dead_job(admin: Admin) -> None:
    client, prefix, store = admin
    job = Job(id="deadbeef", account="acct", upstream_model="gpt-x", reply_to="", enqueued_ms=1, deadline_ms=2,
              input_estimate=1, output_reserve=1, client="tester",
              request=ChatRequest(model="m", messages=[Message("user", [Text("hi")])]))
    store.hset(f"{prefix}:{{acct}}:jobs", job.id, encode_job(job))
    store.zadd(f"{prefix}:{{acct}}:dlq", {job.id: 1234})
    listed = client.get("/admin/dead-letters/acct", headers=AUTH).json()
    assert listed == [{"id": "deadbeef", "dead_ms": 1234, "client": "tester", "model": "m",
                       "reason": "lease expired too often", "kind": "", "status": 0, "attempts": 0}]
    assert client.get("/admin/dead-letters/nope", headers=AUTH).status_code == 404


def test_a_dead_letter_shows_why_and_can_be_replayed_or_purged(admin: Admin) -> None:
    client, prefix, store = admin
    keys = Keys(prefix).account("acct")
    for job_id in ("dead-a", "dead-b"):
        job = Job(id=job_id, account="acct", upstream_model="gpt-x", reply_to="", enqueued_ms=1, deadline_ms=2,
                  input_estimate=1, output_reserve=1, client="tester",
                  request=ChatRequest(model="m", messages=[Message("user", [Text("hi")])]))
        store.hset(keys.jobs, job_id, encode_job(job))
        store.zadd(keys.dlq, {job_id: 1000})
        store.hset(keys.dead, job_id, dlq.encode(dlq.DeadLetter(job_id, "acct", "upstream 503 after 3 retries",
                                                                 kind="upstream_unavailable", status=503,
                                                                 attempts=4)))
    listed = client.get("/admin/dead-letters/acct", headers=AUTH).json()
    assert [(d["id"], d["reason"], d["status"], d["attempts"]) for d in listed] == [
        ("dead-a", "upstream 503 after 3 retries", 503, 4), ("dead-b", "upstream 503 after 3 retries", 503, 4)]
    assert client.post("/admin/dead-letters/acct/dead-a/replay", headers=AUTH).status_code == 202
    assert store.zscore(keys.dlq, "dead-a") is None and store.hexists(keys.jobs, "dead-a")
    assert client.delete("/admin/dead-letters/acct/dead-b", headers=AUTH).status_code == 204
    assert not store.hexists(keys.jobs, "dead-b")
    assert client.get("/admin/dead-letters/acct", headers=AUTH).json() == []
    assert client.post("/admin/dead-letters/acct/dead-b/replay", headers=AUTH).status_code == 404
    assert client.delete("/admin/dead-letters/acct/dead-a", headers=AUTH).status_code == 404
    assert client.delete("/admin/dead-letters/acct/dead-a").status_code == 401


def test_the_schema_describes_the_admin_api(admin: Admin) -> None:
    client, _, _ = admin
    schema = client.get("/openapi.json").json()
    assert {"/admin/keys", "/admin/keys/{key_id}/rotate", "/admin/tenants", "/admin/accounts",
            "/admin/queues", "/admin/dead-letters/{account}"} <= set(schema["paths"])


def test_metrics_can_need_the_admin_token(admin: Admin) -> None:
    client, _, _ = admin
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"authorization": "Bearer sk-client"}).status_code == 401
    assert client.get("/metrics", headers=AUTH).status_code == 200


def test_without_a_token_the_admin_api_is_closed(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SLUICE_ADMIN_TOKEN", raising=False)
    config = parse_config(f"redis_url: {redis_url}\nkey_prefix: t{uuid.uuid4().hex[:10]}\n", env={})
    with TestClient(create_app(config)) as client:
        refused = client.get("/admin/accounts", headers={"authorization": "Bearer anything"})
    assert refused.status_code == 401 and "SLUICE_ADMIN_TOKEN" in refused.text
