"""Client keys at run time: issued, rotated, expired and revoked through the admin API (and
`sluice keys`), effective on another API process within a second, stored only as HMACs."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from starlette.testclient import TestClient

from api.app import create_app
from shared.config import Config, parse_config
from shared.redis.client import connect_sync
from tests.conftest import ROOT, wait_until

SECRET = "test-key-secret-0123456789"
ADMIN = "test-admin-token-0123456789"
CONFIG = """
redis_url: {redis_url}
key_prefix: {prefix}
client_keys: [{{name: cfg-tenant, key: sk-from-config}}]
accounts: [{{name: acct, provider: mock, base_url: "http://127.0.0.1:9/v1"}}]
models: [{{name: m, route: [{{account: acct, model: mock-small}}]}}]
"""


class Pair:
    """Two API processes' apps on one Redis and one key prefix."""

    def __init__(self, config: Config, text: str, a: TestClient, b: TestClient, store: redis.Redis) -> None:
        self.config, self.text, self.a, self.b, self.redis = config, text, a, b, store

    def admin(self, client: TestClient, method: str, path: str, **kwargs: Any) -> Any:
        return client.request(method, path, headers={"authorization": f"Bearer {ADMIN}"}, **kwargs)


def models_status(client: TestClient, key: str) -> int:
    return client.get("/v1/models", headers={"authorization": f"Bearer {key}"}).status_code


@pytest.fixture
def pair(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Pair]:
    monkeypatch.setenv("SLUICE_KEY_SECRET", SECRET)
    monkeypatch.setenv("SLUICE_ADMIN_TOKEN", ADMIN)
    prefix = f"t{uuid.uuid4().hex[:10]}"
    text = CONFIG.format(redis_url=redis_url, prefix=prefix)
    config = parse_config(text, env={})
    a = TestClient(create_app(config), raise_server_exceptions=False)
    b = TestClient(create_app(parse_config(text, env={})), raise_server_exceptions=False)
    a.__enter__()
    b.__enter__()
    store = connect_sync(redis_url)
    yield Pair(config, text, a, b, store)
    a.__exit__(None, None, None)
    b.__exit__(None, None, None)
    keys = list(store.scan_iter(match=f"{prefix}:*"))
    if keys:
        store.delete(*keys)
    store.close()  # type: ignore[no-untyped-call]


def test_a_key_made_on_one_process_works_on_another_within_a_second_and_revoking_stops_it(pair: Pair) -> None:
    made = pair.admin(pair.a, "POST", "/admin/keys", json={"tenant": "team-x"})
    assert made.status_code == 201
    key, key_id = made.json()["key"], made.json()["info"]["id"]
    started = time.monotonic()
    wait_until(lambda: models_status(pair.b, key) == 200, timeout=1.0, what="the new key on process b")
    assert time.monotonic() - started < 1.0
    assert pair.admin(pair.a, "DELETE", f"/admin/keys/{key_id}").status_code == 204
    wait_until(lambda: models_status(pair.b, key) == 401, timeout=1.0, what="the revoked key refused on b")
    assert pair.admin(pair.a, "DELETE", f"/admin/keys/{key_id}").status_code == 404


def test_only_a_keyed_hash_is_stored(pair: Pair) -> None:
    key = pair.admin(pair.a, "POST", "/admin/keys", json={"tenant": "team-x"}).json()["key"]
    wait_until(lambda: models_status(pair.b, key) == 200, timeout=1.0, what="the key on b")
    everything = b"".join(
        k + b"".join(v for pair_ in pair.redis.hgetall(k).items() for v in pair_)
        for k in pair.redis.scan_iter(match=f"{pair.config.key_prefix}:*") if pair.redis.type(k) == b"hash")
    assert key.encode() not in everything and b"sk-from-config" not in everything
    assert SECRET.encode() not in everything
    listed = pair.admin(pair.b, "GET", "/admin/keys").json()
    assert {k["tenant"] for k in listed} == {"cfg-tenant", "team-x"}
    assert key not in str(listed) and "sk-from-config" not in str(listed)


def test_rotation_overlaps_then_the_old_key_stops(pair: Pair) -> None:
    old = pair.admin(pair.a, "POST", "/admin/keys", json={"tenant": "team-r"}).json()
    rotated = pair.admin(pair.a, "POST", f"/admin/keys/{old['info']['id']}/rotate", json={"overlap_seconds": 1.5})
    assert rotated.status_code == 201 and rotated.json()["info"]["tenant"] == "team-r"
    new_key = rotated.json()["key"]
    wait_until(lambda: models_status(pair.b, new_key) == 200, timeout=1.0, what="the new key")
    assert models_status(pair.b, old["key"]) == 200  # inside the overlap both work
    wait_until(lambda: models_status(pair.b, old["key"]) == 401, timeout=3.0, what="the old key to lapse")
    assert models_status(pair.b, new_key) == 200


def test_expire_now_stops_a_key(pair: Pair) -> None:
    made = pair.admin(pair.a, "POST", "/admin/keys", json={"tenant": "team-e"}).json()
    wait_until(lambda: models_status(pair.b, made["key"]) == 200, timeout=1.0, what="the key")
    expired = pair.admin(pair.a, "POST", f"/admin/keys/{made['info']['id']}/expire", json={"in_seconds": 0})
    assert expired.status_code == 200 and expired.json()["live"] is False
    wait_until(lambda: models_status(pair.b, made["key"]) == 401, timeout=1.0, what="the expired key refused")


@pytest.mark.parametrize("token", [None, "wrong-token", ADMIN + "x"])
def test_admin_routes_need_the_admin_token(pair: Pair, token: str | None) -> None:
    headers = {} if token is None else {"authorization": f"Bearer {token}"}
    for method, path in (("GET", "/admin/keys"), ("POST", "/admin/keys"), ("GET", "/admin/accounts")):
        assert pair.a.request(method, path, headers=headers, json={"tenant": "x"}).status_code == 401
    assert pair.admin(pair.a, "GET", "/admin/keys").status_code == 200


def test_a_client_key_is_not_an_admin_token(pair: Pair) -> None:
    assert pair.a.get("/admin/keys", headers={"authorization": "Bearer sk-from-config"}).status_code == 401


def _cli(pair: Pair, tmp_path: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    path = tmp_path / "sluice.yaml"
    path.write_text(pair.text)
    env = {"SLUICE_KEY_SECRET": SECRET, "PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "shared.cli", "keys", "--config", str(path), *args],
                          capture_output=True, text=True, env=env, input=stdin, timeout=60, cwd=ROOT)


def test_the_cli_manages_the_same_keys(pair: Pair, tmp_path: Path) -> None:
    import orjson

    made = _cli(pair, tmp_path, "create", "team-cli")
    assert made.returncode == 0, made.stderr
    created = orjson.loads(made.stdout)
    wait_until(lambda: models_status(pair.a, created["key"]) == 200, timeout=1.0, what="the CLI's key on the API")
    listed = _cli(pair, tmp_path, "list")
    assert created["id"] in listed.stdout and created["key"] not in listed.stdout
    assert _cli(pair, tmp_path, "revoke", created["id"]).returncode == 0
    wait_until(lambda: models_status(pair.a, created["key"]) == 401, timeout=1.0, what="the revoked key refused")
    assert _cli(pair, tmp_path, "revoke", created["id"]).returncode == 1


def test_a_config_key_can_be_given_as_its_hmac_only(pair: Pair, tmp_path: Path, redis_url: str,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    digest = _cli(pair, tmp_path, "hash", stdin="sk-hashed-key\n").stdout.strip()
    assert len(digest) == 64 and "sk-hashed-key" not in digest
    config = parse_config(CONFIG.format(redis_url=redis_url, prefix=pair.config.key_prefix).replace(
        "key: sk-from-config", f"key_hmac: {digest}"), env={})
    with TestClient(create_app(config)) as client:
        assert models_status(client, "sk-hashed-key") == 200
        assert models_status(client, "sk-from-config") == 401


def test_the_api_refuses_a_public_address_without_an_admin_token(tmp_path: Path, redis_url: str) -> None:
    path = tmp_path / "sluice.yaml"
    path.write_text(CONFIG.format(redis_url=redis_url, prefix="tnostart"))
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}
    refused = subprocess.run([sys.executable, "-m", "shared.cli", "api", "--config", str(path), "--host", "0.0.0.0",
                              "--port", "1"], capture_output=True, text=True, env=env, timeout=60, cwd=ROOT)
    assert refused.returncode == 2 and "admin token" in refused.stderr


def test_a_change_whose_message_was_missed_is_picked_up_by_the_poll(pair: Pair) -> None:
    """The version poll is the fallback: a ring changed without a publish still reaches b in time."""
    made = pair.admin(pair.a, "POST", "/admin/keys", json={"tenant": "team-p"}).json()
    wait_until(lambda: models_status(pair.b, made["key"]) == 200, timeout=1.0, what="the key")
    prefix = pair.config.key_prefix
    digest = pair.redis.hget(f"{prefix}:{{keyring}}:ids", made["info"]["id"])
    assert digest is not None
    pair.redis.hdel(f"{prefix}:{{keyring}}:keys", digest)  # a revocation that published nothing
    pair.redis.incr(f"{prefix}:{{keyring}}:version")
    wait_until(lambda: models_status(pair.b, made["key"]) == 401, timeout=1.0, what="the poll to notice")
