"""CPU per provider call: Sluice's built-in HTTP/1.1 client against aiohttp's and httpx's.

    python -m bench.http_clients [--calls 2000] [--concurrency 32] [--rounds 3]

One event loop (uvloop, as in a worker) drives each client in turn against the same local server,
a small keep-alive HTTP/1.1 responder in a child process (so its CPU is not counted), over plain
TCP and over TLS (a throwaway CA from trustme, verification on). Each client POSTs a chat-sized
JSON body `--calls` times one after another (sequential) and with `--concurrency` in flight
(concurrent), reading a sized JSON answer (~700 bytes) or a chunked 16-event SSE stream. CPU per
call is this process's user + system time over the calls; each round runs every client once per
row, the order rotating, and the table shows the median over rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from importlib.metadata import version
from pathlib import Path

import aiohttp
import httptools
import httpx
import trustme
import uvloop

from worker.egress import Egress, tls_context
from worker.http1 import Client

BODY = json.dumps({"model": "gpt-4o-mini", "max_tokens": 64,
                   "messages": [{"role": "user", "content": "Say something short about queues. " * 4}]}).encode()
HEADERS = {"authorization": "Bearer sk-bench-not-a-key", "content-type": "application/json"}
_ANSWER = json.dumps({"id": "chatcmpl-bench", "object": "chat.completion", "model": "gpt-4o-mini",
                      "choices": [{"index": 0, "finish_reason": "stop",
                                   "message": {"role": "assistant", "content": "Queues smooth bursts. " * 16}}],
                      "usage": {"prompt_tokens": 40, "completion_tokens": 64, "total_tokens": 104}}).encode()
JSON_REPLY = (b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n" % len(_ANSWER)
              + _ANSWER)
_EVENTS = [b'data: {"choices":[{"index":0,"delta":{"content":"tok%d "}}]}\n\n' % i for i in range(16)]
STREAM_REPLY = (b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
                + b"".join(b"%x\r\n%s\r\n" % (len(e), e) for e in [*_EVENTS, b"data: [DONE]\n\n"]) + b"0\r\n\r\n")


# --- the server (child process) -------------------------------------------------------------------

class _Responder(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport: asyncio.Transport = transport  # type: ignore[assignment]
        self._parser = httptools.HttpRequestParser(self)
        self._url = b""

    def data_received(self, data: bytes) -> None:
        self._parser.feed_data(data)

    def on_url(self, url: bytes) -> None:
        self._url = url

    def on_message_complete(self) -> None:
        self._transport.write(STREAM_REPLY if self._url.endswith(b"/stream") else JSON_REPLY)


async def _serve(cert_dir: Path) -> None:
    loop = asyncio.get_running_loop()
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(cert_dir / "server.pem")
    plain = await loop.create_server(_Responder, "127.0.0.1", 0)
    secure = await loop.create_server(_Responder, "127.0.0.1", 0, ssl=tls)
    ports = [s.sockets[0].getsockname()[1] for s in (plain, secure)]
    print(*ports, flush=True)
    await loop.run_in_executor(None, sys.stdin.read)  # until the parent closes our stdin


# --- the clients -----------------------------------------------------------------------------------

Call = Callable[[str], Awaitable[int]]


async def _sluice(tls: ssl.SSLContext, base: str, size: int) -> tuple[Call, Callable[[], Awaitable[None]]]:
    client = Client(base, max_connections=size, egress=Egress(tls=tls))

    async def call(url: str) -> int:
        reply = await client.post(url, HEADERS, BODY)
        return len(b"".join([chunk async for chunk in reply.iter_bytes()]))

    return call, client.aclose


async def _httpx(tls: ssl.SSLContext, base: str, size: int) -> tuple[Call, Callable[[], Awaitable[None]]]:
    client = httpx.AsyncClient(verify=tls, trust_env=False,
                               limits=httpx.Limits(max_connections=size, max_keepalive_connections=size))

    async def call(url: str) -> int:
        async with client.stream("POST", url, headers=HEADERS, content=BODY) as reply:
            return len(b"".join([chunk async for chunk in reply.aiter_bytes()]))

    return call, client.aclose


async def _aiohttp(tls: ssl.SSLContext, base: str, size: int) -> tuple[Call, Callable[[], Awaitable[None]]]:
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=size, ssl=tls), trust_env=False)

    async def call(url: str) -> int:
        async with session.post(url, headers=HEADERS, data=BODY) as reply:
            return len(b"".join([chunk async for chunk in reply.content.iter_any()]))

    return call, session.close


CLIENTS = {"sluice http1": _sluice, "aiohttp": _aiohttp, "httpx": _httpx}


async def _run(make: Callable[..., Awaitable[tuple[Call, Callable[[], Awaitable[None]]]]], tls: ssl.SSLContext,
               base: str, path: str, calls: int, concurrency: int) -> tuple[float, float]:
    """(CPU µs per call, calls per second) for one client and one row."""
    call, close = await make(tls, base, max(concurrency, 1))
    url = base + path
    expected = await call(url)

    async def worker(share: int) -> None:
        for _ in range(share):
            assert await call(url) == expected

    # Warm up at the row's concurrency: every pooled connection (and TLS session) exists before the
    # clock starts, so the figures are per call on kept-alive connections.
    await asyncio.gather(*(worker(4) for _ in range(concurrency)))
    shares = [calls // concurrency + (1 if i < calls % concurrency else 0) for i in range(concurrency)]
    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker(n) for n in shares))
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    await close()
    return cpu / calls * 1e6, calls / wall


def _cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        return next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name"))
    except (OSError, subprocess.CalledProcessError, StopIteration):
        return platform.processor() or "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--serve", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        uvloop.run(_serve(args.serve))
        return
    with tempfile.TemporaryDirectory() as tmp:
        ca = trustme.CA()
        ca.issue_cert("127.0.0.1").private_key_and_cert_chain_pem.write_to_path(f"{tmp}/server.pem")
        ca.cert_pem.write_to_path(f"{tmp}/ca.pem")
        server = subprocess.Popen([sys.executable, "-m", "bench.http_clients", "--serve", tmp],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert server.stdout is not None and server.stdin is not None
        plain_port, tls_port = server.stdout.readline().split()
        try:
            results = uvloop.run(_bench(args, f"http://127.0.0.1:{plain_port}", f"https://127.0.0.1:{tls_port}",
                                        tls_context(f"{tmp}/ca.pem")))
        finally:
            server.stdin.close()
            server.wait(10)
    _print(args, results)


Row = tuple[str, str, str, int]  # scheme, answer, path, concurrency


async def _bench(args: argparse.Namespace, plain: str, secure: str,
                 tls: ssl.SSLContext) -> dict[tuple[Row, str], list[tuple[float, float]]]:
    rows: list[Row] = [(scheme, answer, path, c) for scheme in ("http", "https")
                       for answer, path in (("json", "/v1/chat/completions"), ("sse 16", "/stream"))
                       for c in (1, args.concurrency)]
    results: dict[tuple[Row, str], list[tuple[float, float]]] = {}
    names = list(CLIENTS)
    for round_ in range(args.rounds):
        for row in rows:
            scheme, _, path, concurrency = row
            order = names[round_ % len(names):] + names[:round_ % len(names)]
            for name in order:
                base = plain if scheme == "http" else secure
                measured = await _run(CLIENTS[name], tls, base, path, args.calls, concurrency)
                results.setdefault((row, name), []).append(measured)
        print(f"round {round_ + 1}/{args.rounds} done", file=sys.stderr, flush=True)
    return results


def _print(args: argparse.Namespace, results: dict[tuple[Row, str], list[tuple[float, float]]]) -> None:
    print(f"python -m bench.http_clients --calls {args.calls} --concurrency {args.concurrency} "
          f"--rounds {args.rounds}")
    print(f"CPU: {_cpu_model()}, {os.cpu_count()} cores; load average {os.getloadavg()[0]:.2f}; "
          f"Python {platform.python_version()}, "
          + ", ".join(f"{name} {version(name)}" for name in ("uvloop", "aiohttp", "httpx")))
    print()
    print("| scheme | answer | in flight | client | CPU µs/call (median) | min / max | calls/s (median) |")
    print("|---|---|---|---|---|---|---|")
    for (row, name), values in results.items():
        scheme, answer, _, concurrency = row
        cpu = [v[0] for v in values]
        rate = statistics.median(v[1] for v in values)
        print(f"| {scheme} | {answer} | {concurrency} | {name} | {statistics.median(cpu):.0f} | "
              f"{min(cpu):.0f} / {max(cpu):.0f} | {rate:,.0f} |")


if __name__ == "__main__":
    main()
