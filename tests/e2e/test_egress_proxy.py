"""Accounts leave by their own routes, with real API and worker processes and the openai SDK: through
an HTTP proxy, through SOCKS5, and over verified TLS to a provider with a private CA behind a CONNECT
proxy, on both transports, each with whole and streamed answers."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import openai
import pytest
import trustme

from tests.conftest import CLIENT_KEY, SluiceSystem
from tests.worker.egress_servers import HttpProxy, ServerThread, Socks5Proxy, TlsTerminator, server_tls

MESSAGES: list[Any] = [{"role": "user", "content": "Which way out?"}]


@pytest.fixture
def net() -> Iterator[ServerThread]:
    thread = ServerThread()
    yield thread
    thread.stop()


def test_each_account_leaves_by_its_own_route(make_system: Any, net: ServerThread, tmp_path: Any) -> None:
    http_proxy, socks, tunnel = HttpProxy(net), Socks5Proxy(net), HttpProxy(net)
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    provider = TlsTerminator(net, server_tls(ca, "localhost"))  # the mock, over TLS with a private CA
    over_tls = {"base_url": f"https://localhost:{provider.port}/v1", "ca_file": str(tmp_path / "ca.pem"),
                "proxy": f"http://127.0.0.1:{tunnel.port}"}
    accounts = [{"name": "via-http", "proxy": f"http://127.0.0.1:{http_proxy.port}"},
                {"name": "via-socks", "proxy": f"socks5://127.0.0.1:{socks.port}", "http_client": "httpx"},
                {"name": "tls-native", **over_tls}, {"name": "tls-httpx", **over_tls, "http_client": "httpx"}]
    models = [{"name": f"m-{a['name']}", "route": [{"account": a["name"], "model": "mock-small"}]} for a in accounts]
    system: SluiceSystem = make_system(accounts=accounts, models=models)
    mock_port = urlsplit(system.mock_url).port or 80
    provider.target = mock_port
    direct = openai.OpenAI(base_url=f"{system.mock_url}/v1", api_key="x", max_retries=0)
    expected = direct.chat.completions.create(model="mock-small", messages=MESSAGES).choices[0].message.content
    api = openai.OpenAI(base_url=f"{system.base_url}/v1", api_key=CLIENT_KEY, max_retries=0)
    for model in ("m-via-http", "m-via-socks", "m-tls-native", "m-tls-httpx"):
        assert api.chat.completions.create(model=model, messages=MESSAGES).choices[0].message.content == expected
        chunks = api.chat.completions.create(model=model, messages=MESSAGES, stream=True)
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == expected
    mock = f"127.0.0.1:{mock_port}"
    assert http_proxy.seen and all(line.startswith(f"POST http://{mock}/v1/") for line in http_proxy.seen)
    assert socks.seen and set(socks.seen) == {("127.0.0.1", mock_port)}
    assert set(tunnel.seen) == {f"CONNECT localhost:{provider.port} HTTP/1.1"} and provider.connections >= 2
