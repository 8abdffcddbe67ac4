"""Client keys: every protocol's header, looked up by digest; the process keeps no plain key."""

from __future__ import annotations

import gc
import hashlib
import hmac

import pytest
from starlette.requests import Request

from api.auth import ClientKeys, authenticate
from shared.config import ClientKey
from shared.errors import GatewayError

KEYS = [ClientKey(name="team-a", key="sk-team-a-0123456789"), ClientKey(name="team-b", key="sk-team-b-abcdef")]


def request(headers: dict[str, str] | None = None, query: str = "") -> Request:
    raw = [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    return Request({"type": "http", "method": "POST", "path": "/", "headers": raw, "query_string": query.encode()})


@pytest.mark.parametrize("how", ["bearer", "x-api-key", "x-goog-api-key", "query"])
def test_each_protocols_header_finds_the_client(how: str) -> None:
    key = KEYS[1].key
    req = {
        "bearer": request({"Authorization": f"Bearer {key}"}),
        "x-api-key": request({"x-api-key": key}),
        "x-goog-api-key": request({"x-goog-api-key": key}),
        "query": request(query=f"key={key}"),
    }[how]
    assert authenticate(req, ClientKeys(KEYS)) == "team-b"


@pytest.mark.parametrize("presented", [
    None, "", "sk-team-a-012345678", "sk-team-a-01234567899", "sk-team-a-0123456788", "SK-TEAM-A-0123456789",
])
def test_missing_and_near_miss_keys_are_refused_without_echo(presented: str | None) -> None:
    headers = {} if presented is None else {"x-api-key": presented}
    with pytest.raises(GatewayError) as refused:
        authenticate(request(headers), ClientKeys(KEYS))
    assert refused.value.kind == "unauthenticated"
    assert presented is None or presented == "" or presented not in str(refused.value)


def _reachable(root: object) -> list[object]:
    seen: dict[int, object] = {}
    todo = [root]
    while todo:
        obj = todo.pop()
        if id(obj) in seen or isinstance(obj, type):
            continue
        seen[id(obj)] = obj
        todo.extend(gc.get_referents(obj))
        if isinstance(obj, dict):  # a dict with str keys does not report them as referents
            todo.extend(obj)
        if hasattr(type(obj), "__slots__"):
            todo.extend(getattr(obj, slot) for slot in type(obj).__slots__ if hasattr(obj, slot))
    return list(seen.values())


def test_the_plain_keys_are_not_kept() -> None:
    clients = ClientKeys([ClientKey(name=k.name, key=k.key) for k in KEYS])
    held = _reachable(clients)
    for key in KEYS:
        assert key.key not in held and key.key.encode() not in held
    assert "team-a" in held  # the walk does see what the object holds


def test_digests_are_hmac_sha256_under_the_secret() -> None:
    """The contract for keys issued and stored elsewhere: HMAC-SHA-256(secret, key)."""
    secret = b"server-secret"
    clients = ClientKeys(KEYS, secret=secret)
    assert clients.digest("sk-x") == hmac.new(secret, b"sk-x", hashlib.sha256).digest()
    assert ClientKeys(KEYS).digest("sk-x") != ClientKeys(KEYS).digest("sk-x")  # random per process
    assert len(clients) == 2
