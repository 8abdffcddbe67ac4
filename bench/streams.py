"""Streams for the rows: what the mock will answer, and bench/stream_client.py run against a target."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx

from bench.harness import MOCK_MODEL, Bench, Target
from bench.tools import ROOT


def expected_answer(bench: Bench) -> tuple[str, int]:
    """What every stream must deliver: the mock's own text for the bench prompt, and its chunk count."""
    reply = httpx.post(f"{bench.mock_url}/v1/chat/completions", timeout=10, json={
        "model": MOCK_MODEL, "max_tokens": 32, "messages": [{"role": "user", "content": "Hello there"}]}).json()
    text = reply["choices"][0]["message"]["content"]
    settings = httpx.get(f"{bench.mock_url}/_config", timeout=5).json()
    chunks = -(-int(reply["usage"]["completion_tokens"]) // int(settings.get("chunk_tokens", 1)))
    return text, chunks


def stream_client_argv(bench: Bench, target: Target, out: Path, text: str, chunks: int, timeout: float,
                       mode_args: list[str]) -> list[str]:
    return [sys.executable, "-m", "bench.stream_client", "--url", target.url, "--model", target.model,
            "--key", target.key, "--timeout", f"{timeout:g}", "--expect-text", text,
            "--expect-chunks", str(chunks), "--out", str(out),
            *(arg for name, value in target.headers.items() for arg in ("--header", f"{name}: {value}")), *mode_args]


def stream_client(bench: Bench, target: Target, tag: str, mode_args: list[str], text: str, chunks: int,
                  timeout: float) -> dict[str, Any]:
    out = bench.results / f"{tag}-{target.name}.json"
    argv = stream_client_argv(bench, target, out, text, chunks, timeout, mode_args)
    with open(bench.results / f"{tag}-{target.name}-client.log", "wb") as log_file:
        subprocess.run(argv, stdout=log_file, stderr=subprocess.STDOUT, timeout=timeout * 3 + 600, cwd=ROOT)
    if not out.exists():
        return {"sent": 0, "ok": 0, "errors": {"stream client crashed": 1}}
    return dict(json.loads(out.read_text()))

