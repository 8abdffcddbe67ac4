"""What the API does with a request before any worker answers: the client's queue options, the
model, routing, a full queue, and a wait deadline that passes."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

import pytest
from starlette.datastructures import Headers

from api.dispatch import Dispatcher
from api.submission import JobOptions
from shared.config import parse_config
from shared.model import ChatRequest, Message, Text
from shared.redis.client import Role, connect
from shared.redis.keys import Keys
from shared.redis.scripts import Scripts

if TYPE_CHECKING:
    from tests.api.conftest import ApiUnderTest

AUTH = {"authorization": "Bearer sk-api-unit"}
BODY = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


@pytest.mark.parametrize(("headers", "param"), [
    ({"x-sluice-priority": "urgent"}, "x-sluice-priority"),
    ({"x-sluice-max-wait": "soon"}, "x-sluice-max-wait"),
    ({"x-sluice-max-wait": "-1"}, "x-sluice-max-wait"),
    ({"x-sluice-max-wait": "86401"}, "x-sluice-max-wait"),
])
def test_bad_queue_options_are_400s_naming_the_header(api: ApiUnderTest, headers: dict[str, str],
                                                      param: str) -> None:
    got = api.http.post("/v1/chat/completions", headers={**AUTH, **headers}, json=BODY)
    assert got.status_code == 400 and got.json()["error"]["param"] == param


def test_queue_options_default_and_parse() -> None:
    assert JobOptions.from_headers(Headers({})) == JobOptions("interactive", None)
    assert JobOptions.from_headers(Headers({"x-sluice-priority": "batch", "x-sluice-max-wait": "2.5"})) == \
        JobOptions("batch", 2.5)


def test_an_unknown_model_is_a_404_naming_the_field(api: ApiUnderTest) -> None:
    got = api.http.post("/v1/chat/completions", headers=AUTH, json={**BODY, "model": "nope"})
    assert got.status_code == 404 and got.json()["error"]["param"] == "model"


def test_a_full_queue_is_a_429_with_a_retry_after(make_api: Any) -> None:
    api: ApiUnderTest = make_api("{max_depth: 1}")
    api.redis.hset(f"{api.config.key_prefix}:{{acct}}:rl", "cap_r", "30")  # the provider's stated rate
    ready = f"{api.config.key_prefix}:{{acct}}:ready"
    api.redis.zadd(ready, {"someone-else": 1})  # the one slot is taken
    got = api.http.post("/v1/chat/completions", headers=AUTH, json=BODY)
    assert got.status_code == 429 and "queue is full" in got.json()["error"]["message"]
    assert got.headers["retry-after"] == "2"  # one queued job at 30 rpm, not at the configured rate
    assert api.redis.zcard(ready) == 1  # nothing added


@pytest.mark.parametrize("stream", [False, True])
def test_a_job_nobody_starts_in_time_is_a_429_and_leaves_the_queue(api: ApiUnderTest, stream: bool) -> None:
    got = api.http.post("/v1/chat/completions", headers={**AUTH, "x-sluice-max-wait": "0.05"},
                        json={**BODY, "stream": stream})
    # a stream's status line is held back, so its early failure is a real HTTP error too
    assert got.status_code == 429 and "wait deadline" in got.json()["error"]["message"]
    prefix = api.config.key_prefix
    assert api.redis.zcard(f"{prefix}:{{acct}}:ready") == 0 and api.redis.hlen(f"{prefix}:{{acct}}:jobs") == 0


@pytest.mark.anyio
async def test_a_job_is_built_for_the_account_that_can_start_it_soonest(redis_url: str) -> None:
    config = parse_config(f"""
key_prefix: t{uuid.uuid4().hex[:10]}
accounts:
  - {{name: a, provider: mock, base_url: u, limits: {{rpm: 60}}}}
  - {{name: b, provider: mock, base_url: u, limits: {{rpm: 60}}}}
models: [{{name: m, default_max_tokens: 50, route: [{{account: a, model: x-a}}, {{account: b, model: x-b}}]}}]
""", env={})
    client = connect(redis_url, Role.TOOL)
    try:
        await Scripts(client).block(Keys(config.key_prefix).account("a"), 10_000)
        dispatcher = Dispatcher(config, client, hub=type("Hub", (), {"channel": "reply:x"})())  # type: ignore[arg-type]
        model = config.model("m")
        assert model is not None
        req = ChatRequest(model="m", messages=[Message("user", [Text("hello")])], n=2)
        job = await dispatcher.new_job(req, model, "tester", 1.5, "batch")
        assert (job.account, job.upstream_model) == ("b", "x-b")  # a is blocked
        assert job.output_reserve == 100 and job.input_estimate > 0  # default_max_tokens x n
        assert job.deadline_ms - job.enqueued_ms == 1500 and job.priority == "batch"
        assert job.reply_to == "reply:x" and job.client == "tester"
    finally:
        await client.delete(Keys(config.key_prefix).account("a").rl)
        await client.aclose()



def test_a_stream_is_queued_even_after_redis_lost_its_scripts(api: ApiUnderTest) -> None:
    """A stream's enqueue goes out as a bare EVALSHA beside its replay metadata: after a Redis
    restart (scripts gone) the API loads them and sends again, and the job is queued once."""
    api.redis.script_flush()
    got = api.http.post("/v1/chat/completions", headers={**AUTH, "x-sluice-max-wait": "0.05"},
                        json={**BODY, "stream": True})
    # queued (no worker here), then withdrawn at its deadline: the 429 says the enqueue happened
    assert got.status_code == 429 and "wait deadline" in got.json()["error"]["message"]
    request_id = got.headers.get("x-sluice-request-id")
    prefix = api.config.key_prefix
    metas = list(api.redis.scan_iter(f"{prefix}:outmeta:*"))
    assert len(metas) == 1 and (request_id is None or request_id in metas[0].decode())
    assert api.redis.zcard(f"{prefix}:{{acct}}:ready") == 0 and api.redis.hlen(f"{prefix}:{{acct}}:jobs") == 0
