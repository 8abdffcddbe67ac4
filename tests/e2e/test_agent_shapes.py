"""The request shapes real coding agents send pass through to every upstream, streaming and not.

The bodies in tests/fixtures/agents/ were recorded from the agents themselves (Claude Code,
Codex CLI, aider; see each file's `recorded` note and tests/agents/session.py), or, for the
OpenAI Chat agents we cannot run here (OpenHands, Cline, Continue, VS Code Copilot, aider's
function-call and cache modes), derived from the code that builds their requests (each file's
`source` note names it); long texts redacted to their length. Each is posted as recorded (path,
query such as `?beta=true`, headers such as `anthropic-beta`) to a running system whose model is
served by each upstream of the strict mock, and must come back a complete answer in the client's
protocol; the one exception is an image to DeepSeek, whose API reads text only: that is refused
with a 400 in the client's protocol before any upstream sees it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import CLIENT_KEY, SluiceSystem, upstream_matrix

FIXTURES = sorted((Path(__file__).resolve().parent.parent / "fixtures" / "agents").glob("*.json"))
UPSTREAMS = ["openai", "anthropic", "gemini", "mistral", "deepseek"]
# Part types that carry an image in each client protocol (Chat, Anthropic, Responses).
IMAGE_PARTS = frozenset(("image_url", "image", "input_image"))
# The last event each client protocol's stream must end with.
TERMINATORS = {"/v1/messages": b"event: message_stop", "/v1/responses": b"event: response.completed",
               "/v1/chat/completions": b"data: [DONE]"}


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[SluiceSystem]:
    running = upstream_matrix(tmp_path_factory.mktemp("shapes"), redis_url, UPSTREAMS)
    yield running
    running.close()


def _has_image(value: Any) -> bool:
    """Whether a conversation (`messages` or `input`, not tool schemas) holds an image part."""
    if isinstance(value, dict):
        kind = value.get("type")
        return (isinstance(kind, str) and kind in IMAGE_PARTS) or any(_has_image(v) for v in value.values())
    return isinstance(value, list) and any(_has_image(v) for v in value)


def _post(system: SluiceSystem, recorded: dict[str, Any], upstream: str, stream: bool) -> httpx.Response:
    body = {**recorded["body"], "model": f"via-{upstream}", "stream": stream}
    headers = {**recorded["headers"], "authorization": f"Bearer {CLIENT_KEY}", "x-api-key": CLIENT_KEY,
               "content-type": "application/json"}
    url = f"{system.base_url}{recorded['path']}" + (f"?{recorded['query']}" if recorded["query"] else "")
    return httpx.post(url, content=json.dumps(body), headers=headers, timeout=30)


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("upstream", UPSTREAMS)
@pytest.mark.parametrize("fixture", FIXTURES, ids=[f.stem for f in FIXTURES])
def test_recorded_agent_request_passes_to_every_upstream(system: SluiceSystem, fixture: Path, upstream: str,
                                                          stream: bool) -> None:
    recorded = json.loads(fixture.read_text())
    conversation = recorded["body"].get("messages", recorded["body"].get("input"))
    if upstream == "deepseek" and _has_image(conversation):
        before = system.mock_stats()["requests"]
        reply = _post(system, recorded, upstream, stream)
        assert reply.status_code == 400, reply.text
        assert "error" in reply.json() and "image" in reply.text and "DeepSeek" in reply.text, reply.text
        assert system.mock_stats()["requests"] == before  # refused before the upstream saw it
        return
    reply = _post(system, recorded, upstream, stream)
    assert reply.status_code == 200, reply.text
    if stream:
        assert reply.headers["content-type"].startswith("text/event-stream")
        assert TERMINATORS[recorded["path"]] in reply.content, reply.text[-500:]
        assert b"error" not in reply.content.split(b"\n")[0]
        return
    answer = reply.json()
    content = answer.get("content") or answer.get("output") or answer["choices"][0]["message"]
    assert content, answer


@pytest.mark.parametrize("upstream", ["mistral", "anthropic"])
def test_a_broken_history_is_a_400_in_the_clients_protocol(system: SluiceSystem, upstream: str) -> None:
    """A tool call never answered is illegal in every protocol: refused before any upstream sees it."""
    before = system.mock_stats()["requests"]
    chat = {"path": "/v1/chat/completions", "query": "", "headers": {}, "body": {"messages": [
        {"role": "user", "content": "go"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "ls", "arguments": "{}"}}]},
        {"role": "user", "content": "and?"}]}}
    reply = _post(system, chat, upstream, stream=False)
    assert reply.status_code == 400, reply.text
    error = reply.json()["error"]
    assert error["type"] == "invalid_request_error" and "call_1" in error["message"], error
    messages = {"path": "/v1/messages", "query": "", "headers": {"anthropic-version": "2023-06-01"}, "body": {
        "max_tokens": 64, "messages": [
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_x", "content": "?"}]}]}}
    reply = _post(system, messages, upstream, stream=True)
    assert reply.status_code == 400, reply.text
    assert reply.json()["error"]["type"] == "invalid_request_error" and "toolu_x" in reply.text
    assert system.mock_stats()["requests"] == before  # nothing reached the upstream


@pytest.mark.parametrize("fixture", [f for f in FIXTURES if f.stem.startswith("claude_code")],
                         ids=lambda f: f.stem)
def test_claude_code_counts_tokens_of_its_turns(system: SluiceSystem, fixture: Path) -> None:
    """Claude Code calls count_tokens with the body of the turn it is about to send."""
    recorded = json.loads(fixture.read_text())
    body = {k: v for k, v in recorded["body"].items() if k not in ("max_tokens", "stream", "metadata")}
    counted = {**recorded, "path": "/v1/messages/count_tokens", "body": body}
    reply = _post(system, counted, "anthropic", stream=False)
    assert reply.status_code == 200, reply.text
    assert reply.json()["input_tokens"] > 100
