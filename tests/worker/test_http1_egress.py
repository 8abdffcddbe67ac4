"""The provider transports on real sockets: TLS, proxies, gzip, stale keep-alive connections and
timeouts. Every test runs against both transports (the built-in client and httpx), each built by
`make_transport` from an `Account` the way a worker builds it, on both asyncio's loop and uvloop:
the hand-written client must pass exactly the suite the library passes.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
import trustme

from shared.config import Account
from tests.worker.egress_servers import HttpProxy, Origin, ServerThread, Socks5Proxy, server_tls
from worker.http1 import HttpError, HttpTimeout
from worker.upstream import Transport, make_transport

pytestmark = pytest.mark.anyio

MakeTransport = Callable[..., Transport]
PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")


@pytest.fixture(params=[pytest.param("asyncio", id="asyncio"),
                        pytest.param(("asyncio", {"use_uvloop": True}), id="uvloop")])
def anyio_backend(request: pytest.FixtureRequest) -> Any:
    return request.param


@pytest.fixture(params=["native", "httpx"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(autouse=True)
def no_ambient_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)


@pytest.fixture(scope="session")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="session")
def ca_file(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("tls") / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


@pytest.fixture
def net() -> Iterator[ServerThread]:
    thread = ServerThread()
    yield thread
    thread.stop()


@pytest.fixture
async def connect(kind: str, anyio_backend: Any) -> AsyncIterator[MakeTransport]:
    made: list[Transport] = []

    def make(base_url: str, **settings: Any) -> Transport:
        account = Account(name="t", provider="mock", base_url=base_url, http_client=kind, **settings)  # type: ignore[arg-type]
        made.append(make_transport(account))
        return made[-1]

    yield make
    for transport in made:
        await transport.aclose()


async def ask(transport: Transport, url: str, body: bytes = b"abc") -> bytes:
    reply = await transport.post(url, {"content-type": "application/json"}, body)
    assert reply.status == 200
    return await reply.read()


# --- TLS -----------------------------------------------------------------------------------------

async def test_tls_with_the_accounts_ca_sends_sni_and_reuses_the_connection(
        net: ServerThread, ca: trustme.CA, ca_file: str, connect: MakeTransport) -> None:
    sni: list[str | None] = []
    origin = Origin(net, server_tls(ca, "localhost", sni=sni))
    url = f"https://localhost:{origin.port}"
    transport = connect(url, ca_file=ca_file)
    assert await ask(transport, url + "/json") == b'{"echo": 3}'
    assert await ask(transport, url + "/json", b"abcd") == b'{"echo": 4}'
    assert sni == ["localhost"] and origin.connections == 1


async def test_certificate_verification_is_on_by_default(
        net: ServerThread, ca: trustme.CA, connect: MakeTransport) -> None:
    origin = Origin(net, server_tls(ca, "localhost"))
    url = f"https://localhost:{origin.port}"
    with pytest.raises(HttpError, match="TLS certificate was refused: unable to get local issuer") as refused:
        await ask(connect(url), url + "/json")
    assert origin.requests == [] and not refused.value.request_sent  # safe to send elsewhere


async def test_a_hostname_mismatch_is_refused(
        net: ServerThread, ca: trustme.CA, ca_file: str, connect: MakeTransport) -> None:
    origin = Origin(net, server_tls(ca, "provider.example"))
    url = f"https://localhost:{origin.port}"
    with pytest.raises(HttpError, match=r"TLS certificate was refused: Hostname mismatch.*'localhost'"):
        await ask(connect(url, ca_file=ca_file), url + "/json")
    assert origin.requests == []


# --- proxies -------------------------------------------------------------------------------------

async def test_https_proxy_from_the_environment_carries_a_tunnel(
        net: ServerThread, ca: trustme.CA, ca_file: str, connect: MakeTransport,
        monkeypatch: pytest.MonkeyPatch) -> None:
    sni: list[str | None] = []
    origin = Origin(net, server_tls(ca, "localhost", sni=sni))
    proxy = HttpProxy(net)
    monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{proxy.port}")
    url = f"https://localhost:{origin.port}"
    transport = connect(url, ca_file=ca_file)
    assert await ask(transport, url + "/json") == b'{"echo": 3}'
    assert await ask(transport, url + "/json") == b'{"echo": 3}'
    assert proxy.seen == [f"CONNECT localhost:{origin.port} HTTP/1.1"]  # one tunnel, kept alive
    assert sni == ["localhost"]  # TLS runs end to end, through the tunnel


async def test_no_proxy_exempts_a_host(
        net: ServerThread, ca: trustme.CA, ca_file: str, connect: MakeTransport,
        monkeypatch: pytest.MonkeyPatch) -> None:
    origin = Origin(net, server_tls(ca, "localhost"))
    proxy = HttpProxy(net)
    monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{proxy.port}")
    monkeypatch.setenv("NO_PROXY", "example.com,localhost")
    url = f"https://localhost:{origin.port}"
    assert await ask(connect(url, ca_file=ca_file), url + "/json") == b'{"echo": 3}'
    assert proxy.seen == [] and origin.paths() == ["/json"]


async def test_http_proxy_forwards_a_plain_http_origin(
        net: ServerThread, connect: MakeTransport, monkeypatch: pytest.MonkeyPatch) -> None:
    origin = Origin(net)
    proxy = HttpProxy(net)
    monkeypatch.setenv("http_proxy", f"http://127.0.0.1:{proxy.port}")
    url = f"http://localhost:{origin.port}"
    assert await ask(connect(url), url + "/json?x=1") == b'{"echo": 3}'
    assert proxy.seen == [f"POST http://localhost:{origin.port}/json?x=1 HTTP/1.1"]


async def test_account_proxy_with_credentials_and_a_wrong_password_named_without_it(
        net: ServerThread, ca: trustme.CA, ca_file: str, connect: MakeTransport) -> None:
    origin = Origin(net, server_tls(ca, "localhost"))
    proxy = HttpProxy(net, credentials=("team-a", "s3cret"))
    url = f"https://localhost:{origin.port}"
    good = connect(url, ca_file=ca_file, proxy=f"http://team-a:s3cret@127.0.0.1:{proxy.port}")
    assert await ask(good, url + "/json") == b'{"echo": 3}'
    bad = connect(url, ca_file=ca_file, proxy=f"http://team-a:wr0ng-pass@127.0.0.1:{proxy.port}")
    with pytest.raises(HttpError, match="407") as refused:
        await ask(bad, url + "/json")
    assert "wr0ng-pass" not in str(refused.value)
    assert origin.paths() == ["/json"]


@pytest.mark.parametrize("credentials", [None, ("team-b", "p@ss word")])
async def test_account_socks5_proxy_resolves_the_name_at_the_proxy(
        net: ServerThread, ca: trustme.CA, ca_file: str, connect: MakeTransport,
        credentials: tuple[str, str] | None) -> None:
    origin = Origin(net, server_tls(ca, "localhost"))
    socks = Socks5Proxy(net, credentials)
    auth = "team-b:p%40ss%20word@" if credentials else ""
    url = f"https://localhost:{origin.port}"
    transport = connect(url, ca_file=ca_file, proxy=f"socks5://{auth}127.0.0.1:{socks.port}")
    assert await ask(transport, url + "/json") == b'{"echo": 3}'
    assert socks.seen == [("localhost", origin.port)]


async def test_wrong_socks5_credentials_are_refused_without_naming_them(
        net: ServerThread, connect: MakeTransport) -> None:
    origin = Origin(net)
    socks = Socks5Proxy(net, ("team-b", "right"))
    url = f"http://127.0.0.1:{origin.port}"
    with pytest.raises(HttpError) as refused:
        await ask(connect(url, proxy=f"socks5://team-b:wr0ng-pass@127.0.0.1:{socks.port}"), url + "/json")
    assert "wr0ng-pass" not in str(refused.value) and origin.requests == []


async def test_accounts_leave_by_their_own_route_whatever_the_environment_says(
        net: ServerThread, connect: MakeTransport, monkeypatch: pytest.MonkeyPatch) -> None:
    origin = Origin(net)
    socks = Socks5Proxy(net)
    with socket.socket() as dead:  # a port nobody listens on: the environment's proxy is unusable
        dead.bind(("127.0.0.1", 0))
        monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{dead.getsockname()[1]}")
    url = f"http://127.0.0.1:{origin.port}"
    assert await ask(connect(url, proxy=f"socks5://127.0.0.1:{socks.port}"), url + "/json") == b'{"echo": 3}'
    assert await ask(connect(url, proxy="direct"), url + "/json") == b'{"echo": 3}'
    with pytest.raises(HttpError, match="cannot connect") as unreachable:
        await ask(connect(url), url + "/json")
    assert not unreachable.value.request_sent
    assert socks.seen == [("127.0.0.1", origin.port)] and origin.paths() == ["/json", "/json"]


# --- gzip ----------------------------------------------------------------------------------------

async def test_a_gzip_answer_is_decoded(net: ServerThread, connect: MakeTransport) -> None:
    origin = Origin(net)
    url = f"http://127.0.0.1:{origin.port}"
    assert await ask(connect(url), url + "/gzip") == b'{"echo": 3}'
    assert origin.gzipped == 1  # the client asked for gzip, and got it


async def test_a_gzip_stream_is_decoded_as_it_arrives(net: ServerThread, connect: MakeTransport) -> None:
    origin = Origin(net)
    url = f"http://127.0.0.1:{origin.port}"
    reply = await connect(url).post(url + "/gzip-stream", {}, b"{}")
    chunks = reply.iter_bytes()
    assert await anext(chunks) == b'data: {"n": 1}\n\n'  # before the server has written the second event
    net.set(origin.release)
    assert b"".join([chunk async for chunk in chunks]) == b'data: {"n": 2}\n\n'
    assert origin.gzipped == 1


# --- hanging up: an aborted job stops the provider, whichever way the connection leaves ---------------

@pytest.mark.parametrize("route", ["direct", "connect-tunnel", "forwarding-proxy", "socks5"])
async def test_a_cancelled_stream_hangs_up_on_the_provider_and_its_connection_is_not_reused(
        net: ServerThread, ca: trustme.CA, ca_file: str, connect: MakeTransport, route: str) -> None:
    tls = route in ("connect-tunnel", "socks5")
    origin = Origin(net, server_tls(ca, "localhost") if tls else None)
    url = f"{'https' if tls else 'http'}://localhost:{origin.port}"
    settings: dict[str, Any] = {"ca_file": ca_file} if tls else {}
    if route in ("connect-tunnel", "forwarding-proxy"):
        settings["proxy"] = f"http://127.0.0.1:{HttpProxy(net).port}"
    elif route == "socks5":
        settings["proxy"] = f"socks5://127.0.0.1:{Socks5Proxy(net).port}"
    transport = connect(url, **settings)
    assert await ask(transport, url + "/json") == b'{"echo": 3}'  # a kept-alive connection, then reused
    first = asyncio.Event()

    async def consume() -> None:  # what worker/upstream.py's stream() does with a reply
        reply = await transport.post(url + "/endless", {}, b"{}")
        try:
            async for _ in reply.iter_bytes():
                first.set()
        finally:
            await reply.aclose()

    reading = asyncio.create_task(consume())
    await asyncio.wait_for(first.wait(), 5)
    reading.cancel()  # the job is aborted: its client left
    with pytest.raises(asyncio.CancelledError):
        await reading
    assert origin.hung_up.wait(5), "the provider kept streaming to nobody"
    assert await ask(transport, url + "/json") == b'{"echo": 3}'
    assert origin.connections == 2  # the half-read connection was not handed to the next request
    assert origin.paths() == ["/json", "/endless", "/json"]


# --- stale keep-alive connections: never lost, never sent twice ------------------------------------

@pytest.mark.parametrize("close", ["/close-idle", "/reset-idle", "/408-idle"])
async def test_a_connection_the_server_closed_while_idle_is_not_used(
        net: ServerThread, connect: MakeTransport, close: str) -> None:
    origin = Origin(net)
    url = f"http://127.0.0.1:{origin.port}"
    transport = connect(url)
    assert await ask(transport, url + close) == b'{"echo": 3}'
    # The connection is idle in the pool. Block this loop (no await) while the server closes it:
    # the FIN, reset or stray 408 is in the kernel, but the client's loop has not seen it when the
    # next POST picks a connection.
    net.set(origin.close_now)
    assert origin.idle_closed.wait(5)
    assert await ask(transport, url + "/json", b"once") == b'{"echo": 4}'
    assert origin.paths() == [close, "/json"] and origin.connections == 2


@pytest.mark.parametrize("reused", [False, True])
async def test_a_request_that_reached_the_server_is_never_resent(
        net: ServerThread, connect: MakeTransport, reused: bool) -> None:
    origin = Origin(net)
    url = f"http://127.0.0.1:{origin.port}"
    transport = connect(url)
    if reused:
        await ask(transport, url + "/json")
    with pytest.raises(HttpError, match="may have reached it") as lost:
        await ask(transport, url + "/drop")
    assert lost.value.request_sent
    assert origin.paths() == ["/json", "/drop"] if reused else ["/drop"]


# --- timeouts ------------------------------------------------------------------------------------

async def test_connect_timeout_covers_the_tls_handshake(net: ServerThread, connect: MakeTransport) -> None:
    mute = Origin(net, mute=True)  # accepts TCP, never answers the ClientHello
    url = f"https://localhost:{mute.port}"
    with pytest.raises(HttpTimeout, match="cannot connect to the provider in time") as timed_out:
        await ask(connect(url, connect_timeout_seconds=0.2), url + "/json")
    assert not timed_out.value.request_sent


async def test_read_timeout_while_waiting_for_the_head(net: ServerThread, connect: MakeTransport) -> None:
    origin = Origin(net)
    url = f"http://127.0.0.1:{origin.port}"
    with pytest.raises(HttpTimeout, match="did not answer in time"):
        await ask(connect(url, timeout_seconds=0.2), url + "/silent")
    assert origin.paths() == ["/silent"]


async def test_read_timeout_when_the_body_stalls(net: ServerThread, connect: MakeTransport) -> None:
    origin = Origin(net)
    url = f"http://127.0.0.1:{origin.port}"
    reply = await connect(url, timeout_seconds=0.2).post(url + "/stall-body", {}, b"{}")
    assert reply.status == 200
    with pytest.raises(HttpTimeout, match="stopped sending in time"):
        await reply.read()


async def test_total_timeout_ends_a_body_that_never_stalls(net: ServerThread, connect: MakeTransport) -> None:
    origin = Origin(net)
    url = f"http://127.0.0.1:{origin.port}"
    transport = connect(url, timeout_seconds=5, total_timeout_seconds=0.3)  # bytes keep coming every 20 ms
    with pytest.raises(HttpTimeout, match=r"did not complete in time \(total timeout\)"):
        await ask(transport, url + "/drip")
