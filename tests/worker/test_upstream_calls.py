"""worker/upstream.py over both transports, against a real HTTP server: whole answers, streams,
and every way a call can fail becoming the right GatewayError."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from contextlib import AbstractContextManager

import pytest

from shared.config import Account
from shared.errors import GatewayError
from shared.jobs import Job
from shared.mock import MockSettings
from shared.model import ChatRequest, Message, MessageStart, MessageStop, StreamEvent, Text, TextDelta
from worker.providers import provider_for
from worker.upstream import HttpxTransport, UpstreamResult, call, make_transport, stream

pytestmark = pytest.mark.anyio
Live = Callable[[MockSettings], AbstractContextManager[str]]


def account(base_url: str, client: str = "native", key: str = "sk-up", timeout: float = 10.0) -> Account:
    return Account(name="a", provider="mock", base_url=f"{base_url}/v1", api_key=key, http_client=client,  # type: ignore[arg-type]
                   timeout_seconds=timeout)


def job(stream_it: bool) -> Job:
    req = ChatRequest(model="m", messages=[Message("user", [Text("hello")])], stream=stream_it, max_tokens=8)
    return Job("j1", "a", "mock-small", req, "", 0, 0, 5, 8)


@pytest.mark.parametrize("client", ["native", "httpx"])
async def test_a_whole_answer_and_what_the_call_saw(live_mock: Live, client: str) -> None:
    with live_mock(MockSettings(output_tokens=5, api_key="sk-up")) as base:
        acct = account(base, client)
        transport = make_transport(acct)
        assert isinstance(transport, HttpxTransport) == (client == "httpx")
        provider = provider_for(acct)
        seen = UpstreamResult()
        try:
            answer = await call(transport, provider, provider.request(job(False)), seen)
        finally:
            await transport.aclose()
    assert answer.usage.output_tokens == 5 and answer.content
    assert seen.status == 200 and seen.done_at >= seen.sent_at > 0 and seen.headers


@pytest.mark.parametrize("client", ["native", "httpx"])
async def test_a_stream_arrives_as_event_batches_to_the_end(live_mock: Live, client: str) -> None:
    with live_mock(MockSettings(output_tokens=6, chunk_tokens=2)) as base:
        acct = account(base, client)
        transport = make_transport(acct)
        provider = provider_for(acct)
        seen = UpstreamResult()
        batches: list[list[StreamEvent]] = []
        try:
            async for batch in stream(transport, provider, provider.request(job(True)), seen):
                batches.append(batch)
            # the connection went back to the pool: a second call on it works
            again = await call(transport, provider, provider.request(job(False)), UpstreamResult())
        finally:
            await transport.aclose()
    events = [e for b in batches for e in b]
    assert isinstance(events[0], MessageStart) and isinstance(events[-1], MessageStop)
    assert sum(1 for e in events if isinstance(e, TextDelta)) >= 2 and all(batches)
    assert seen.status == 200 and seen.done_at > 0 and again.content


@pytest.mark.parametrize("stream_it", [False, True])
async def test_a_refused_key_is_the_providers_error(live_mock: Live, stream_it: bool) -> None:
    with live_mock(MockSettings(api_key="sk-right")) as base:
        acct = account(base, key="sk-wrong")
        transport = make_transport(acct)
        provider = provider_for(acct)
        try:
            with pytest.raises(GatewayError) as err:
                if stream_it:
                    async for _ in stream(transport, provider, provider.request(job(True)), UpstreamResult()):
                        pass
                else:
                    await call(transport, provider, provider.request(job(False)), UpstreamResult())
        finally:
            await transport.aclose()
    assert err.value.kind == "upstream_auth"


@pytest.mark.parametrize("client", ["native", "httpx"])
async def test_nobody_listening_is_retryable_unavailable(client: str) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, never listening: connections are refused
        acct = account(f"http://127.0.0.1:{port}", client)
        transport = make_transport(acct)
        provider = provider_for(acct)
        try:
            with pytest.raises(GatewayError) as err:
                await call(transport, provider, provider.request(job(False)), UpstreamResult())
        finally:
            await transport.aclose()
    assert err.value.kind == "upstream_unavailable" and err.value.retryable


@pytest.mark.parametrize("client", ["native", "httpx"])
async def test_a_provider_that_never_answers_times_out(client: str) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(8)  # the kernel accepts the connection; nobody ever reads or answers
        acct = account(f"http://127.0.0.1:{s.getsockname()[1]}", client, timeout=0.3)
        transport = make_transport(acct)
        provider = provider_for(acct)
        try:
            with pytest.raises(GatewayError) as err:
                await call(transport, provider, provider.request(job(False)), UpstreamResult())
        finally:
            await transport.aclose()
    assert err.value.kind == "upstream_timeout" and err.value.retryable


async def test_an_unreadable_answer_is_a_502() -> None:
    async def answer_garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 9\r\n\r\nnot json!")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer_garbage, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    acct = account(f"http://127.0.0.1:{port}")
    transport = make_transport(acct)
    provider = provider_for(acct)
    try:
        with pytest.raises(GatewayError) as err:
            await call(transport, provider, provider.request(job(False)), UpstreamResult())
    finally:
        await transport.aclose()
        server.close()
    assert err.value.status == 502 and "unreadable" in err.value.message
