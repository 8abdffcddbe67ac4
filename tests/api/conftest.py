"""An API app in-process (its lifespan run by Starlette's TestClient) on the session's private
Redis, with its own key prefix and no workers: what the API does on its own."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import redis
from starlette.testclient import TestClient

from api.app import create_app
from shared.config import Config, parse_config
from shared.redis.client import connect_sync

CLIENT_KEY = "sk-api-unit"


def api_config(redis_url: str, queue: str = "{}") -> Config:
    return parse_config(f"""
redis_url: {redis_url}
key_prefix: t{uuid.uuid4().hex[:10]}
client_keys: [{{name: tester, key: {CLIENT_KEY}}}, {{name: other, key: sk-other}}]
accounts: [{{name: acct, provider: mock, base_url: "http://127.0.0.1:9/v1"}}]
models: [{{name: m, route: [{{account: acct, model: mock-small}}]}}]
queue: {queue}
""", env={})


class ApiUnderTest:
    def __init__(self, config: Config, http: TestClient, store: redis.Redis) -> None:
        self.config = config
        self.http = http
        self.redis = store  # a blocking client on the same Redis, for arranging and inspecting


@pytest.fixture
def make_api(redis_url: str) -> Iterator[object]:
    opened: list[tuple[TestClient, redis.Redis, str]] = []

    def make(queue: str = "{}") -> ApiUnderTest:
        config = api_config(redis_url, queue)
        http = TestClient(create_app(config), raise_server_exceptions=False)
        http.__enter__()
        store = connect_sync(redis_url)
        opened.append((http, store, config.key_prefix))
        return ApiUnderTest(config, http, store)

    yield make
    for http, store, prefix in opened:
        http.__exit__(None, None, None)
        keys = list(store.scan_iter(match=f"{prefix}:*"))
        if keys:
            store.delete(*keys)
        store.close()  # type: ignore[no-untyped-call]


@pytest.fixture
def api(make_api: object) -> ApiUnderTest:
    return make_api()  # type: ignore[operator, no-any-return]
