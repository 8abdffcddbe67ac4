"""Hostile input against a real API process: an oversized body is refused before it is read,
and every other bound (messages, parts, string length, nesting, max_tokens, bad JSON, bad
UTF-8) is a clear 400 in the client's own protocol, never a 500 and never a queued job."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from tests.conftest import CLIENT_KEY, SluiceSystem
from tests.e2e.raw_http import read_answer

LIMITS = {"body_read_seconds": 1, "max_body_bytes": 65536, "max_messages": 8, "max_content_parts": 12,
          "max_json_depth": 6, "max_string_chars": 1000}


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[SluiceSystem]:
    made = SluiceSystem(tmp_path_factory.mktemp("hostile"), redis_url, [{"name": "acct"}],
                        [{"name": "m", "route": [{"account": "acct", "model": "mock-small"}], "max_tokens": 100}],
                        extra={"request_limits": LIMITS})
    yield made
    made.close()


def _msgs(n: int, text: str = "hi") -> list[dict[str, Any]]:
    return [{"role": "user" if i % 2 == 0 else "assistant", "content": text} for i in range(n)]


def _post(system: SluiceSystem, path: str, body: bytes | dict[str, Any], **headers: str) -> httpx.Response:
    kwargs: dict[str, Any] = {"content": body} if isinstance(body, bytes) else {"json": body}
    return httpx.post(f"{system.base_url}{path}", headers={"authorization": f"Bearer {CLIENT_KEY}",
                                                           "x-api-key": CLIENT_KEY, "content-type": "application/json",
                                                           "anthropic-version": "2023-06-01", **headers},
                      timeout=30, **kwargs)


def test_a_declared_huge_body_is_refused_before_it_is_sent(system: SluiceSystem) -> None:
    url = urlsplit(system.base_url)
    with socket.create_connection((url.hostname, url.port), timeout=10) as sock:
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                     b"authorization: Bearer " + CLIENT_KEY.encode() +
                     b"\r\ncontent-length: 67108864\r\n\r\n{\"model\"")
        answer = read_answer(sock)  # the answer comes while 64 MiB are still unsent
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b"request_too_large" in answer


def test_a_body_trickled_in_too_slowly_gets_a_408(system: SluiceSystem) -> None:
    url = urlsplit(system.base_url)
    with socket.create_connection((url.hostname, url.port), timeout=10) as sock:
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                     b"authorization: Bearer " + CLIENT_KEY.encode() + b"\r\ncontent-length: 100\r\n\r\n{")
        answer = read_answer(sock)  # nothing more is sent: the server gives up after body_read_seconds
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert b"request_timeout" in answer


def test_a_chunked_body_is_cut_off_at_the_cap(system: SluiceSystem) -> None:
    sent = {"n": 0}

    def body() -> Iterator[bytes]:
        yield b'{"model": "m", "messages": [{"role": "user", "content": "'
        for _ in range(1000):  # 16 MB if it were all read
            sent["n"] += 1
            yield b"x" * 16384

    answer = httpx.post(f"{system.base_url}/v1/messages", content=body(), timeout=30,
                        headers={"x-api-key": CLIENT_KEY, "anthropic-version": "2023-06-01"})
    assert answer.status_code == 413
    assert answer.json()["error"]["type"] == "request_too_large"


@pytest.mark.parametrize(("body", "param"), [
    ({"model": "m", "messages": _msgs(9)}, "messages"),
    ({"model": "m", "messages": [{"role": "user", "content": [{"type": "text", "text": "a"}] * 13}]}, "messages"),
    ({"model": "m", "messages": _msgs(1, "x" * 1001)}, "messages"),
    ({"model": "m", "messages": _msgs(1), "max_tokens": 101}, "max_tokens"),
    ({"model": "m", "messages": _msgs(1), "tools": [{"type": "function", "function": {
        "name": "f", "parameters": {"a": {"b": {"c": {"d": {"e": {"f": {"g": 1}}}}}}}}}]}, "tools[0]"),
    ({"model": "m", "messages": _msgs(1), "response_format": {"type": "json_schema", "json_schema": {
        "name": "s", "schema": {"a": {"b": {"c": {"d": {"e": {"f": {"g": 1}}}}}}}}}}, "response_format"),
])
def test_each_bound_is_a_400_naming_the_field(system: SluiceSystem, body: dict[str, Any], param: str) -> None:
    answer = _post(system, "/v1/chat/completions", body)
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["type"] == "invalid_request_error"
    assert answer.json()["error"]["param"] == param


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/messages", "/v1/responses",
                                  "/v1beta/models/m:generateContent"])
@pytest.mark.parametrize("body", [
    b'{"model": "m", "messages": [{"role": "user", "content": "\xff\xfe"}]}',
    b'{"model": "m", "messages": [',
    b'{"model": "m", "x": ' + b"[" * 20000 + b"]" * 20000 + b"}",
    b"\x00\x01\x02",
])
def test_bad_json_bad_utf8_and_deep_nesting_are_400s_in_each_protocol(system: SluiceSystem, path: str,
                                                                     body: bytes) -> None:
    answer = _post(system, path, body)
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    if path == "/v1/messages":
        assert error["type"] == "invalid_request_error"
    elif path.startswith("/v1beta"):
        assert error["status"] == "INVALID_ARGUMENT"
    else:
        assert error["type"] == "invalid_request_error"


def test_nothing_hostile_was_queued(system: SluiceSystem) -> None:
    assert system.counter("acct", "claimed") == 0
    assert system.redis.hlen(f"{system.prefix}:{{acct}}:jobs") == 0
