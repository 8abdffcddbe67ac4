"""One real coding-agent CLI against a whole running Sluice, inside a loopback-only network.

    unshare -n sh -c 'ip link set lo up && exec python -m tests.agents.session --agent claude \
        --upstream mistral --out report.json [--record requests.jsonl]'

Starts, inside the namespace the caller made: a private redis-server, the mock provider, one
worker per upstream account and the API (tests/conftest.py's SluiceSystem), then runs the agent
non-interactively with its own HOME in a scratch folder holding `notes.txt`. The mock answers a
turn that ends in the user's words with a call to the agent's file-reading tool (its name and
arguments per agent below) and a turn that ends in a tool result with text, so the agent does one
full loop: request, tool call, the agent runs the tool, tool result, answer. aider has no function
tools: its "tool" is the edit it applies from the answer's SEARCH/REPLACE block, then its
`--auto-test` command, whose failure output it sends back as the next user turn; the mock answers
that turn (and only that one) with a second edit that makes the test pass.

`--record` puts a recording proxy between the agent and Sluice and writes every request the agent
made (path, query, headers without credentials, body) as JSON lines: that is how the recorded
shapes in tests/fixtures/agents/ were taken. The report (JSON) says what happened.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import orjson

from shared.redis.embedded import EmbeddedRedis, free_port
from tests.conftest import CLIENT_KEY, SluiceSystem

HERE = Path(__file__).resolve().parent
BIN = HERE / "node_modules" / ".bin"
AIDER = HERE / ".venv-aider" / "bin" / "aider"
MODEL = "agent-model"
SECRET = "the-launch-code-is-4217"
TIMEOUT = 240.0
_HIDDEN = {"authorization", "x-api-key", "x-goog-api-key"}


def _accounts(placeholder: str) -> list[dict[str, Any]]:
    return [
        {"name": "up-mistral", "provider": "mistral", "api_key": "mock-key", "base_url": f"{placeholder}/mistral/v1"},
        {"name": "up-anthropic", "provider": "anthropic", "api_key": "mock-key", "base_url": placeholder},
        {"name": "up-openai", "provider": "openai", "api_key": "mock-key", "base_url": f"{placeholder}/v1"},
        {"name": "up-gemini", "provider": "gemini", "api_key": "mock-key", "base_url": placeholder},
    ]


# --- a recording proxy (only with --record) --------------------------------------------------


def _recorder(target: str, port: int, sink: Path) -> None:
    import uvicorn

    client = httpx.AsyncClient(base_url=target, timeout=TIMEOUT, trust_env=False)

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = [(k.decode(), v.decode()) for k, v in scope["headers"] if k.decode() != "host"]
        entry = {"method": scope["method"], "path": scope["path"], "query": scope["query_string"].decode(),
                 "headers": {k: v for k, v in headers if k not in _HIDDEN},
                 "body": orjson.loads(body) if body.strip().startswith(b"{") else None}
        with sink.open("ab") as f:
            f.write(orjson.dumps(entry) + b"\n")
        request = client.build_request(scope["method"], scope["path"], params=scope["query_string"].decode(),
                                       headers=headers, content=body)
        reply = await client.send(request, stream=True)
        await send({"type": "http.response.start", "status": reply.status_code,
                    "headers": [(k.encode(), v.encode()) for k, v in reply.headers.items()
                                if k not in ("content-length", "transfer-encoding", "content-encoding")]})
        async for chunk in reply.aiter_raw():
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
        await reply.aclose()

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


# --- the agents ------------------------------------------------------------------------------


def _claude(base: str, work: Path, home: Path) -> tuple[list[str], dict[str, str], dict[str, Any]]:
    env = {"ANTHROPIC_BASE_URL": base, "ANTHROPIC_API_KEY": CLIENT_KEY, "ANTHROPIC_MODEL": MODEL,
           "ANTHROPIC_SMALL_FAST_MODEL": MODEL, "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
           "DISABLE_AUTOUPDATER": "1", "DISABLE_TELEMETRY": "1", "DISABLE_ERROR_REPORTING": "1"}
    args = [str(BIN / "claude"), "-p", "Read notes.txt and tell me the launch code.", "--model", MODEL,
            "--max-turns", "4", "--allowedTools", "Read", "--output-format", "text"]
    return args, env, {"tool_name": "Read", "tool_arguments": {"file_path": str(work / "notes.txt")}}


def _codex(base: str, work: Path, home: Path) -> tuple[list[str], dict[str, str], dict[str, Any]]:
    codex_home = home / ".codex"
    codex_home.mkdir(parents=True, exist_ok=True)
    (codex_home / "config.toml").write_text(
        '[model_providers.sluice]\nname = "sluice"\n'
        f'base_url = "{base}/v1"\nenv_key = "SLUICE_KEY"\nwire_api = "responses"\n'
        "request_max_retries = 0\nstream_max_retries = 0\n")
    env = {"CODEX_HOME": str(codex_home), "SLUICE_KEY": CLIENT_KEY}
    args = [str(BIN / "codex"), "exec", "--skip-git-repo-check", "-c", "model_provider=sluice", "-m", MODEL,
            # Codex's own sandbox helper will not start from a temporary folder; the whole run is
            # inside a loopback-only namespace and the one command is `cat notes.txt`.
            "--sandbox", "danger-full-access", "Read notes.txt and tell me the launch code."]
    return args, env, {"tool_name": "exec_command", "tool_arguments": {"cmd": "cat notes.txt", "tty": False}}


def _edit(search: str, replace: str) -> str:
    return f"notes.txt\n```\n<<<<<<< SEARCH\n{search}\n=======\n{replace}\n>>>>>>> REPLACE\n```\n"


# aider's test command: passes only once the code is verified, and on failure prints the file as
# it found it. `$(cat ...)` is expanded by the shell, so only the command's output (not the
# command, which aider quotes too) holds the edited code: the mock's second answer keys on it.
AIDER_TEST = (f"grep -qx {SECRET}-checked-verified notes.txt"
              ' || { echo "TEST FAILED: found $(cat notes.txt)"; exit 1; }')
AIDER_FAILURE = f"TEST FAILED: found {SECRET}-checked"


def _aider(base: str, work: Path, home: Path) -> tuple[list[str], dict[str, str], dict[str, Any]]:
    """Two model turns: the first edit fails aider's --auto-test, aider sends the test's output back
    (as user text: aider has no function tools), and the answer to that output is a second edit."""
    env = {"AIDER_CHECK_UPDATE": "false", "AIDER_ANALYTICS": "false"}
    args = [str(AIDER), "--message", "Append -checked to the launch code in notes.txt.", "notes.txt",
            "--openai-api-base", f"{base}/v1", "--openai-api-key", CLIENT_KEY, "--model", f"openai/{MODEL}",
            "--yes-always", "--no-git", "--no-check-update", "--no-analytics", "--no-show-model-warnings",
            "--edit-format", "diff", "--no-stream", "--map-tokens", "0", "--no-auto-lint",
            "--auto-test", "--test-cmd", AIDER_TEST]
    mock = {"reply_text": _edit(SECRET, f"{SECRET}-checked"),
            "reply_when": {AIDER_FAILURE: _edit(f"{SECRET}-checked", f"{SECRET}-checked-verified")}}
    return args, env, mock


AGENTS = {"claude": _claude, "codex": _codex, "aider": _aider}


def run(agent: str, upstream: str, scratch: Path, record: Path | None) -> dict[str, Any]:
    redis_server = EmbeddedRedis()
    placeholder = "http://MOCK"
    system = SluiceSystem(scratch, redis_server.url, accounts=_accounts(placeholder),
                          models=[{"name": MODEL, "route": [{"account": f"up-{upstream}", "model": "mock-model"}]}],
                          base_url_placeholder=placeholder)
    try:
        work, home = scratch / "work", scratch / "home"
        work.mkdir()
        home.mkdir()
        (work / "notes.txt").write_text(SECRET + "\n")
        base = system.base_url
        if record is not None:
            port = free_port()
            threading.Thread(target=_recorder, args=(base, port, record), daemon=True).start()
            base = f"http://127.0.0.1:{port}"
            _wait_port(port)
        args, env, mock = AGENTS[agent](base, work, home)
        system.mock_config(**mock)
        env = {"PATH": os.environ["PATH"], "HOME": str(home), "TERM": "dumb", "NO_COLOR": "1", **env}
        started = time.monotonic()
        proc = subprocess.run(args, cwd=work, env=env, capture_output=True, timeout=TIMEOUT, stdin=subprocess.DEVNULL)
        stats = system.mock_stats()
        return {"agent": agent, "upstream": upstream, "exit": proc.returncode,
                "seconds": round(time.monotonic() - started, 1),
                "stdout": proc.stdout.decode(errors="replace")[-4000:],
                "stderr": proc.stderr.decode(errors="replace")[-4000:],
                "upstream_status": stats.get("by_status", {}), "upstream_requests": stats.get("requests", 0),
                "tool_results": stats.get("tool_results", []),
                "notes": (work / "notes.txt").read_text()}
    finally:
        system.close()
        redis_server.stop()


def _wait_port(port: int) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.05)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--agent", choices=sorted(AGENTS), required=True)
    parser.add_argument("--upstream", choices=["mistral", "anthropic", "openai", "gemini"], required=True)
    parser.add_argument("--scratch", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--record", type=Path, default=None)
    args = parser.parse_args()
    shutil.rmtree(args.scratch, ignore_errors=True)
    args.scratch.mkdir(parents=True)
    report = run(args.agent, args.upstream, args.scratch, args.record)
    args.out.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2))
    sys.exit(0)


if __name__ == "__main__":
    main()
