"""Accounts leave by their own proxies: real API and worker processes, one account through an HTTP
proxy, one through SOCKS5 on httpx, both reaching the mock provider with whole and streamed answers."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import openai
import pytest

from tests.conftest import CLIENT_KEY, SluiceSystem
from tests.worker.egress_servers import HttpProxy, ServerThread, Socks5Proxy

MESSAGES: list[Any] = [{"role": "user", "content": "Which way out?"}]


@pytest.fixture
def net() -> Iterator[ServerThread]:
    thread = ServerThread()
    yield thread
    thread.stop()


def test_each_account_leaves_through_its_own_proxy(make_system: Any, net: ServerThread) -> None:
    http_proxy, socks = HttpProxy(net), Socks5Proxy(net)
    accounts = [{"name": "via-http", "proxy": f"http://127.0.0.1:{http_proxy.port}"},
                {"name": "via-socks", "proxy": f"socks5://127.0.0.1:{socks.port}", "http_client": "httpx"}]
    models = [{"name": f"m-{a['name']}", "route": [{"account": a["name"], "model": "mock-small"}]} for a in accounts]
    system: SluiceSystem = make_system(accounts=accounts, models=models)
    direct = openai.OpenAI(base_url=f"{system.mock_url}/v1", api_key="x", max_retries=0)
    expected = direct.chat.completions.create(model="mock-small", messages=MESSAGES).choices[0].message.content
    api = openai.OpenAI(base_url=f"{system.base_url}/v1", api_key=CLIENT_KEY, max_retries=0)
    for model in ("m-via-http", "m-via-socks"):
        assert api.chat.completions.create(model=model, messages=MESSAGES).choices[0].message.content == expected
        chunks = api.chat.completions.create(model=model, messages=MESSAGES, stream=True)
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == expected
    mock = f"127.0.0.1:{system.mock_port}"
    assert http_proxy.seen and all(line.startswith(f"POST http://{mock}/v1/") for line in http_proxy.seen)
    assert socks.seen and set(socks.seen) == {("127.0.0.1", system.mock_port)}
