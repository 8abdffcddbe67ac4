"""Streaming client for the benchmark: reads each SSE stream as it arrives and times it.

    python -m bench.stream_client --url http://127.0.0.1:8080/v1 --model M --key K \
        rate --rate 50 --duration 20 --out result.json
    python -m bench.stream_client ... concurrent --count 2000 --ramp 1 --out result.json

`rate` is open loop: stream i is due at start + i / rate and its times are counted from that
moment, so a client that falls behind is charged for it (`lag` reports how late sends were).
`concurrent` opens `count` streams spread over `ramp` seconds and holds them all.

Per stream: time to first content token (from the scheduled time and from the send), total
time, content chunks, and whether the text equals `--expect-text` and the stream ended with
a finish reason and `[DONE]`. The summary (JSON) gives percentiles in milliseconds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson


@dataclass
class StreamResult:
    lag_ms: float = 0.0
    ttft_ms: float | None = None  # from the send
    ttft_sched_ms: float | None = None  # from the scheduled time
    total_ms: float | None = None
    total_sched_ms: float | None = None
    chunks: int = 0
    text: str = ""
    finished: bool = False
    done: bool = False
    error: str | None = None


@dataclass
class Tracker:
    open_now: int = 0
    max_open: int = 0
    results: list[StreamResult] = field(default_factory=list)

    def opened(self) -> None:
        self.open_now += 1
        self.max_open = max(self.max_open, self.open_now)

    def closed(self) -> None:
        self.open_now -= 1


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def describe(values: list[float]) -> dict[str, float | None]:
    return {"p50": percentile(values, 50), "p90": percentile(values, 90), "p99": percentile(values, 99),
            "max": max(values) if values else None, "n": len(values)}


class HttpError(Exception):
    pass


class Pool:
    """Keep-alive HTTP/1.1 connections to one host, reused after a stream ends cleanly.

    A hand-rolled client on asyncio streams rather than httpx: at thousands of streams on two
    cores, httpx's own per-chunk cost made the client the bottleneck and its delays looked like
    the server's.
    """

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self.path = parts.path.rstrip("/")
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def get(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        while self.idle:
            reader, writer = self.idle.pop()
            if not reader.at_eof() and not writer.is_closing():
                return reader, writer
            writer.close()
        return await asyncio.open_connection(self.host, self.port, limit=1 << 20)

    def put(self, conn: tuple[asyncio.StreamReader, asyncio.StreamWriter]) -> None:
        self.idle.append(conn)

    def close(self) -> None:
        for _, writer in self.idle:
            writer.close()
        self.idle.clear()


async def _read_head(reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
    status_line = await reader.readline()
    if not status_line:
        raise HttpError("connection closed before the status line")
    status = int(status_line.split(b" ", 2)[1])
    headers: dict[str, str] = {}
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b"\n", b""):
            break
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers


async def _body_parts(reader: asyncio.StreamReader, headers: dict[str, str]) -> AsyncIterator[bytes]:
    """The body as it arrives: chunked, sized, or up to the end of the connection."""
    if "chunked" in headers.get("transfer-encoding", "").lower():
        while True:
            size_line = await reader.readline()
            if not size_line:
                raise HttpError("connection closed mid-stream")
            size = int(size_line.split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return
            data = await reader.readexactly(size + 2)
            yield data[:-2]
    elif "content-length" in headers:
        yield await reader.readexactly(int(headers["content-length"]))
    else:
        while data := await reader.read(65536):
            yield data


def _error_kind(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, ConnectionResetError):
        return "connection reset"
    if isinstance(exc, asyncio.IncompleteReadError | HttpError):
        return "connection closed mid-stream"
    return type(exc).__name__


async def one_stream(pool: Pool, request: bytes, due: float, tracker: Tracker, limit_s: float) -> StreamResult:
    result = StreamResult()
    sent = time.perf_counter()
    result.lag_ms = max(0.0, (sent - due) * 1000)
    tracker.opened()
    try:
        async with asyncio.timeout(limit_s):
            await _exchange(pool, request, result, sent, due)
    except (OSError, TimeoutError, asyncio.IncompleteReadError, HttpError, ValueError) as exc:
        result.error = _error_kind(exc)
    finally:
        tracker.closed()
        tracker.results.append(result)
    return result


async def _exchange(pool: Pool, request: bytes, result: StreamResult, sent: float, due: float) -> None:
    reader, writer = await pool.get()
    clean = False
    try:
        writer.write(request)
        status, headers = await _read_head(reader)
        if status != 200:
            async for _ in _body_parts(reader, headers):
                pass
            result.error = f"http {status}"
            clean = True
            return
        buffer = b""
        async for part in _body_parts(reader, headers):
            buffer += part
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                if line.startswith(b"data:"):
                    _on_data(line[5:].strip(), result, sent, due)
        end = time.perf_counter()
        result.total_ms = (end - sent) * 1000
        result.total_sched_ms = (end - due) * 1000
        clean = "close" not in headers.get("connection", "").lower()
    finally:
        if clean:
            pool.put((reader, writer))
        else:
            writer.close()


def _on_data(data: bytes, result: StreamResult, sent: float, due: float) -> None:
    if data == b"[DONE]":
        result.done = True
        return
    event = orjson.loads(data)
    if "error" in event:
        result.error = "error event in stream"
        return
    for choice in event.get("choices") or ():
        content = (choice.get("delta") or {}).get("content")
        if content:
            if result.ttft_ms is None:
                now = time.perf_counter()
                result.ttft_ms = (now - sent) * 1000
                result.ttft_sched_ms = (now - due) * 1000
            result.chunks += 1
            result.text += content
        if choice.get("finish_reason"):
            result.finished = True


def summarize(results: list[StreamResult], expect_text: str | None, expect_chunks: int | None,
              wall_s: float, max_open: int) -> dict[str, Any]:
    errors: dict[str, int] = {}
    for r in results:
        kind = r.error
        if kind is None and not (r.done and r.finished):
            kind = "stream ended without finish/[DONE]"
        if kind is None and expect_text is not None and r.text != expect_text:
            kind = "text differs from upstream"
        if kind is not None:
            errors[kind] = errors.get(kind, 0) + 1
    good = [r for r in results if r.error is None and r.done and r.finished
            and (expect_text is None or r.text == expect_text)]
    chunk_counts = [r.chunks for r in results if r.error is None]
    values = {
        "lag_ms": [r.lag_ms for r in results],
        "ttft_ms": [r.ttft_ms for r in good if r.ttft_ms is not None],
        "ttft_sched_ms": [r.ttft_sched_ms for r in good if r.ttft_sched_ms is not None],
        "total_ms": [r.total_ms for r in good if r.total_ms is not None],
        "total_sched_ms": [r.total_sched_ms for r in good if r.total_sched_ms is not None],
    }
    return {
        "sent": len(results),
        "ok": len(good),
        "errors": errors,
        "wall_s": wall_s,
        "max_open": max_open,
        **{name: describe(series) for name, series in values.items()},
        "chunks_expected_per_stream": expect_chunks,
        "chunks_received": sum(chunk_counts),
        "chunks_expected": (expect_chunks * len(chunk_counts)) if expect_chunks is not None else None,
        "chunks_min": min(chunk_counts) if chunk_counts else None,
        "chunks_max": max(chunk_counts) if chunk_counts else None,
        "values": values,
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    body = orjson.dumps({"model": args.model, "stream": True, "max_tokens": args.max_tokens,
                         "messages": [{"role": "user", "content": "Hello there"}]})
    pool = Pool(args.url)
    extra = "".join(f"{header}\r\n" for header in args.header)
    request = (f"POST {pool.path}/chat/completions HTTP/1.1\r\nHost: {pool.host}:{pool.port}\r\n"
               f"Authorization: Bearer {args.key}\r\nContent-Type: application/json\r\n"
               f"Accept: text/event-stream\r\n{extra}Content-Length: {len(body)}\r\n\r\n").encode() + body
    if args.mode == "rate":
        count = max(1, round(args.rate * args.duration))
        spacing = 1.0 / args.rate
    else:
        count = args.count
        spacing = args.ramp / count if count else 0.0
    tracker = Tracker()
    tasks: list[asyncio.Task[StreamResult]] = []
    start = time.perf_counter() + 0.05
    for i in range(count):
        due = start + i * spacing
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one_stream(pool, request, due, tracker, args.timeout)))
    # Every stream has its own timeout; this bounds the whole run as well.
    await asyncio.wait(tasks, timeout=args.timeout + 10)
    for task in tasks:
        if not task.done():
            task.cancel()
    wall = time.perf_counter() - start
    pool.close()
    results = tracker.results
    missing = count - len(results)
    if missing > 0:
        results.extend(StreamResult(error="cancelled at the run's deadline") for _ in range(missing))
    return summarize(results, args.expect_text, args.expect_chunks, wall, tracker.max_open)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", required=True, help="base URL ending in /v1")
    parser.add_argument("--model", required=True)
    parser.add_argument("--key", default="x")
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--timeout", type=float, default=30.0, help="per-stream timeout, seconds")
    parser.add_argument("--expect-text", default=None, help="the content every stream must deliver")
    parser.add_argument("--expect-chunks", type=int, default=None, help="content chunks the upstream sends")
    parser.add_argument("--out", default=None, help="write the JSON summary here (default: stdout)")
    parser.add_argument("--header", action="append", default=[], help="an extra request header, 'Name: value'")
    sub = parser.add_subparsers(dest="mode", required=True)
    rate = sub.add_parser("rate", help="open loop at a constant rate")
    rate.add_argument("--rate", type=float, required=True)
    rate.add_argument("--duration", type=float, required=True)
    conc = sub.add_parser("concurrent", help="open COUNT streams over RAMP seconds and hold them")
    conc.add_argument("--count", type=int, required=True)
    conc.add_argument("--ramp", type=float, default=1.0)
    args = parser.parse_args(argv)
    summary = run_sync(args)
    text = json.dumps(summary, indent=1)
    if args.out:
        Path(args.out).write_text(text)
    else:
        sys.stdout.write(text + "\n")


def run_sync(args: argparse.Namespace) -> dict[str, Any]:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(run(args))
    return uvloop.run(run(args))


if __name__ == "__main__":
    main()
