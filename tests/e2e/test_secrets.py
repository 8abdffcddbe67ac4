"""Secrets stay secret: after a run with good and refused provider keys, runtime client keys,
admin calls, a stored Response, an embedding request and a batch run to its end, no provider key,
client key, key secret or admin token is anywhere in Redis, in any process's log, in the batch
file store, in `sluice status`, in the admin API or in a config dump."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import openai
import pytest
import redis

from tests.conftest import ROOT, SluiceSystem, wait_until

GOOD_KEY = "sk-upstream-good-5f0c1e2d3b4a59687766"
BAD_KEY = "sk-upstream-refused-0a1b2c3d4e5f6a7b8c"
CLIENT_KEY = "sk-client-secret-9a8b7c6d5e4f3a2b1c"
KEY_SECRET = "key-secret-1b2c3d4e5f6a7b8c9d0e"
ADMIN_TOKEN = "admin-token-2c3d4e5f6a7b8c9d0e1f"


def _everything_in(store: redis.Redis) -> bytes:
    """Every key, field, member and value in the whole Redis (not just this test's prefix)."""
    out: list[bytes] = []
    for key in store.scan_iter(count=1000):
        out.append(key)
        kind = store.type(key)
        if kind == b"string":
            out.append(store.get(key) or b"")
        elif kind == b"hash":
            out.extend(b for item in store.hgetall(key).items() for b in item)
        elif kind == b"zset":
            out.extend(m for m, _ in store.zrange(key, 0, -1, withscores=True))
        elif kind == b"list":
            out.extend(store.lrange(key, 0, -1))
        elif kind == b"stream":
            out.extend(v for _, fields in store.xrange(key) for item in fields.items() for v in item)
    return b"\n".join(out)


def test_no_secret_reaches_redis_logs_status_admin_or_a_config_dump(
        tmp_path: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLUICE_KEY_SECRET", KEY_SECRET)
    monkeypatch.setenv("SLUICE_ADMIN_TOKEN", ADMIN_TOKEN)
    key_file = tmp_path / "upstream.key"
    key_file.write_text(GOOD_KEY + "\n")
    accounts = [{"name": "good", "api_key_file": str(key_file)},
                {"name": "refused", "api_key": BAD_KEY, "headers": {"x-extra-auth": BAD_KEY}}]
    models = [{"name": "m", "route": [{"account": "good", "model": "mock-small"}]},
              {"name": "r", "route": [{"account": "refused", "model": "mock-small"}]},
              {"name": "e", "kind": "embedding", "route": [{"account": "good", "model": "mock-embed"}]}]
    system = SluiceSystem(tmp_path, redis_url, accounts, models, mock_args=["--api-key", GOOD_KEY], batchers=1,
                          extra={"client_keys": [{"name": "tenant", "key": CLIENT_KEY}]})
    try:
        secrets = [GOOD_KEY, BAD_KEY, CLIENT_KEY, KEY_SECRET, ADMIN_TOKEN]
        client = openai.OpenAI(base_url=f"{system.base_url}/v1", api_key=CLIENT_KEY, max_retries=0)
        assert client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}],
                                              max_tokens=4).choices[0].message.content
        with pytest.raises(openai.APIStatusError) as refused:
            client.chat.completions.create(model="r", messages=[{"role": "user", "content": "hi"}], max_tokens=4)
        assert refused.value.status_code == 502
        stored = client.responses.create(model="m", input="hi", max_output_tokens=4)
        assert client.responses.retrieve(stored.id).id == stored.id
        assert client.embeddings.create(model="e", input="hi").data
        line = b'{"custom_id": "a", "method": "POST", "url": "/v1/chat/completions", ' \
               b'"body": {"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}}\n'
        uploaded = client.files.create(file=("in.jsonl", line), purpose="batch")
        batch = client.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions",
                                      completion_window="24h")
        wait_until(lambda: client.batches.retrieve(batch.id).status == "completed", timeout=30, what="the batch")
        admin = {"authorization": f"Bearer {ADMIN_TOKEN}"}
        made = httpx.post(f"{system.base_url}/admin/keys", json={"tenant": "runtime"}, headers=admin).json()
        secrets.append(made["key"])
        wait_until(lambda: httpx.get(f"{system.base_url}/v1/models",
                                     headers={"authorization": f"Bearer {made['key']}"}).status_code == 200,
                   timeout=2, what="the runtime key")
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=f"{system.base_url}/v1", api_key=GOOD_KEY + "x", max_retries=0).models.list()
        shown = [httpx.get(f"{system.base_url}{path}", headers=admin).text
                 for path in ("/admin/keys", "/admin/accounts", "/admin/tenants", "/admin/queues", "/admin/batches")]
        env = {**system.env}
        status = subprocess.run([sys.executable, "-m", "shared.cli", "status", "--config", str(system.config_path),
                                 "--json"], capture_output=True, text=True, env=env, timeout=60, cwd=ROOT)
        dump = subprocess.run([sys.executable, "-m", "shared.cli", "check-config", "--config",
                               str(system.config_path), "--dump"], capture_output=True, text=True, env=env,
                              timeout=60, cwd=ROOT)
        assert status.returncode == 0 and dump.returncode == 0, status.stderr + dump.stderr
        assert "<redacted>" in dump.stdout and "refused" in dump.stdout
        store = redis.Redis.from_url(redis_url)
        everything = _everything_in(store)
        logs = {p.name: p.read_bytes() for p in (tmp_path / system.prefix).glob("*.log")}
        stored_files = [p.read_bytes() for p in (tmp_path / f"{system.prefix}-data").rglob("*") if p.is_file()]
        assert logs and everything and stored_files
        for secret in secrets:
            assert secret.encode() not in everything, "a secret is in Redis"
            for name, text in logs.items():
                assert secret.encode() not in text, f"a secret is in {name}"
            assert not any(secret.encode() in data for data in stored_files), "a secret is in the file store"
            for text in (*shown, status.stdout, status.stderr, dump.stdout, dump.stderr):
                assert secret not in text
    finally:
        system.close()
