"""Fuzzing every protocol parser: whatever a client or a provider sends, a parser answers with
its result or a GatewayError, never another exception (which would be a 500 or a dead job).

Inputs are arbitrary JSON grafted onto each format's real shape (so the fuzzer gets past the
first field check), plus raw bytes. The budget is bounded (`max_examples`) to keep CI short.
"""

from __future__ import annotations

import contextlib
from typing import Any

import msgspec
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from api.dialects import DIALECTS
from shared.batches.lines import LineProblem, parse_line
from shared.embeddings import EmbeddingRequest
from shared.errors import GatewayError
from shared.model import ChatRequest
from shared.protocols import (
    anthropic_upstream,
    gemini_embeddings,
    gemini_upstream,
    mistral,
    ollama,
    openai_chat_upstream,
    openai_embeddings,
)
from shared.protocols.contracts import UpstreamDialect
from shared.protocols.sse import SseFrame, SseParser

FUZZ = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
UPSTREAMS: dict[str, UpstreamDialect] = {"openai": openai_chat_upstream, "anthropic": anthropic_upstream,
                                         "gemini": gemini_upstream, "mistral": mistral}

scalars = st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False) | st.text(max_size=20)
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=10), inner, max_size=4), max_leaves=20)
roles = st.sampled_from(["user", "assistant", "system", "developer", "tool", "model", "function", "x"])
part_types = st.sampled_from(["text", "image_url", "image", "input_text", "input_image", "tool_use",
                              "tool_result", "thinking", "function_call", "function_call_output", "refusal",
                              "document", "file", "input_file", "x"])
parts = st.fixed_dictionaries({"type": part_types}, optional={
    "text": json_values, "image_url": json_values, "source": json_values, "id": json_values, "name": json_values,
    "input": json_values, "content": json_values, "tool_use_id": json_values, "call_id": json_values,
    "arguments": json_values, "output": json_values, "inlineData": json_values, "functionCall": json_values,
    "functionResponse": json_values, "thinking": json_values, "file": json_values, "file_data": json_values,
    "file_url": json_values, "filename": json_values, "title": json_values, "context": json_values})
messages = st.fixed_dictionaries({"role": roles}, optional={
    "content": st.text(max_size=20) | st.lists(parts | json_values, max_size=3) | json_values,
    "tool_calls": json_values, "tool_call_id": json_values, "parts": st.lists(parts | json_values, max_size=3),
    "name": json_values, "images": json_values, "thinking": json_values})
bodies = st.fixed_dictionaries({}, optional={
    "model": st.just("m") | json_values, "messages": st.lists(messages, max_size=3) | json_values,
    "input": st.text(max_size=10) | st.lists(messages | parts, max_size=3) | json_values,
    "contents": st.lists(messages, max_size=3) | json_values, "system": json_values, "instructions": json_values,
    "systemInstruction": json_values, "max_tokens": json_values, "max_output_tokens": json_values,
    "max_completion_tokens": json_values, "stream": json_values, "tools": json_values, "tool_choice": json_values,
    "temperature": json_values, "stop": json_values, "n": json_values, "response_format": json_values,
    "generationConfig": json_values, "stream_options": json_values, "thinking": json_values,
    "reasoning": json_values, "metadata": json_values, "previous_response_id": json_values, "store": json_values,
    "options": json_values, "format": json_values, "think": json_values, "keep_alive": json_values})


def _parse(dialect_name: str, body: bytes) -> ChatRequest | None:
    try:
        return DIALECTS[dialect_name].parse_request(body, "m", False)
    except GatewayError:
        return None


@pytest.mark.parametrize("dialect_name", sorted(DIALECTS))
@FUZZ
@given(body=bodies)
def test_client_parsers_and_upstream_builders_never_crash(dialect_name: str, body: dict[str, Any]) -> None:
    try:
        raw = orjson.dumps(body)
    except TypeError:  # a value orjson cannot write (an integer past 64 bits): raw bytes are covered below
        return
    req = _parse(dialect_name, raw)
    if req is None:
        return
    for upstream in UPSTREAMS.values():  # what a parsed request becomes for every provider format
        with contextlib.suppress(GatewayError):
            upstream.build_request(req, "upstream-model", 16)


@pytest.mark.parametrize("dialect_name", sorted(DIALECTS))
@FUZZ
@given(body=st.binary(max_size=200))
def test_client_parsers_survive_raw_bytes(dialect_name: str, body: bytes) -> None:
    _parse(dialect_name, body)


answers = st.fixed_dictionaries({}, optional={
    "id": json_values, "model": json_values, "choices": st.lists(json_values | st.fixed_dictionaries(
        {}, optional={"message": json_values, "delta": json_values, "finish_reason": json_values,
                      "index": json_values}), max_size=2), "usage": json_values, "usageMetadata": json_values,
    "content": st.lists(parts | json_values, max_size=3) | json_values, "stop_reason": json_values,
    "candidates": st.lists(st.fixed_dictionaries({}, optional={"content": json_values, "finishReason": json_values}),
                           max_size=2) | json_values,
    "type": st.sampled_from(["message", "message_start", "content_block_start", "content_block_delta",
                             "content_block_stop", "message_delta", "message_stop", "error", "ping"]) | json_values,
    "index": json_values, "delta": json_values, "content_block": parts | json_values, "message": json_values,
    "error": json_values, "promptFeedback": json_values})


def _encoded(value: Any) -> bytes:
    try:
        return orjson.dumps(value)
    except TypeError:
        return b"{}"


@pytest.mark.parametrize("name", sorted(UPSTREAMS))
@FUZZ
@given(body=answers | json_values, raw=st.binary(max_size=100), status=st.integers(100, 599),
       retry=st.sampled_from(["", "1", "-3", "abc", "Wed, 21 Oct 2015 07:28:00 GMT", "1e400"]))
def test_upstream_answer_and_error_parsers_never_crash(name: str, body: Any, raw: bytes, status: int,
                                                       retry: str) -> None:
    upstream = UPSTREAMS[name]
    for payload in (_encoded(body), raw):
        # upstream.call() turns these into a 502
        with contextlib.suppress(GatewayError, ValueError, KeyError, TypeError):
            upstream.parse_response(payload)
        headers = {"retry-after": retry} if retry else {}
        assert isinstance(upstream.parse_error(status, payload, headers), GatewayError)


@pytest.mark.parametrize("name", sorted(UPSTREAMS))
@FUZZ
@given(frames=st.lists(st.tuples(st.sampled_from([None, "message", "error", "message_start", "content_block_delta",
                                                  "content_block_start", "message_delta", "message_stop", "ping"]),
                                 answers | json_values | st.binary(max_size=40)), max_size=6),
       raw=st.binary(max_size=300))
def test_upstream_stream_parsers_never_crash(name: str, frames: list[tuple[str | None, Any]], raw: bytes) -> None:
    parser = UPSTREAMS[name].stream_parser()
    try:
        for event, data in frames:
            parser.feed(SseFrame(data if isinstance(data, bytes) else _encoded(data), event))
        for frame in SseParser().feed(raw):
            parser.feed(frame)
        parser.finish()
    except GatewayError:
        pass


# --- embeddings, Ollama's show, batch lines ------------------------------------------------------

embedding_bodies = st.fixed_dictionaries({}, optional={
    "model": st.just("m") | json_values, "input": st.text(max_size=10) | st.lists(
        st.text(max_size=10) | st.lists(st.integers(-5, 2**40), max_size=3) | json_values, max_size=3) | json_values,
    "encoding_format": st.sampled_from(["float", "base64", "x"]) | json_values, "dimensions": json_values,
    "user": json_values, "content": st.fixed_dictionaries({}, optional={"parts": st.lists(parts | json_values,
                                                                                          max_size=3)}) | json_values,
    "requests": st.lists(json_values | st.fixed_dictionaries({}, optional={"model": json_values,
                                                                          "content": json_values}), max_size=3),
    "taskType": json_values, "title": json_values, "outputDimensionality": json_values})


def _embedding_parsers(raw: bytes) -> list[EmbeddingRequest]:
    parsed = []
    for parse in (openai_embeddings.parse_request,
                  lambda b: gemini_embeddings.parse_request(b, "m", "embedContent"),
                  lambda b: gemini_embeddings.parse_request(b, "m", "batchEmbedContents")):
        with contextlib.suppress(GatewayError):
            parsed.append(parse(raw))
    return parsed


@FUZZ
@given(body=embedding_bodies, raw=st.binary(max_size=100))
def test_embedding_parsers_and_builders_never_crash(body: dict[str, Any], raw: bytes) -> None:
    for payload in (_encoded(body), raw):
        for req in _embedding_parsers(payload):
            for build in (lambda r: openai_embeddings.build_request(r, "up", "float"),
                          lambda r: gemini_embeddings.build_request(r, "up")):
                with contextlib.suppress(GatewayError):
                    build(req)


@FUZZ
@given(body=st.fixed_dictionaries({}, optional={"data": json_values, "usage": json_values,
                                                "embeddings": json_values, "model": json_values}) | json_values,
       raw=st.binary(max_size=100), n=st.integers(0, 3))
def test_embedding_answer_parsers_never_crash(body: Any, raw: bytes, n: int) -> None:
    req = EmbeddingRequest("m", ["x"] * n)
    for payload in (_encoded(body), raw):
        # worker/embeddings.call() turns these into a 502
        with contextlib.suppress(GatewayError, ValueError, KeyError, TypeError, msgspec.DecodeError):
            openai_embeddings.parse_response(payload, "m", n)
        with contextlib.suppress(GatewayError, ValueError, KeyError, TypeError, msgspec.DecodeError):
            gemini_embeddings.parse_response(payload, req, "m")


@FUZZ
@given(body=st.fixed_dictionaries({}, optional={"model": json_values, "name": json_values,
                                                "verbose": json_values}) | json_values, raw=st.binary(max_size=60))
def test_ollama_show_parser_never_crashes(body: Any, raw: bytes) -> None:
    for payload in (_encoded(body), raw):
        with contextlib.suppress(GatewayError):
            ollama.parse_show_request(payload)


@pytest.mark.parametrize(("dialect", "endpoint"), [("openai", "/v1/chat/completions"), ("openai", "/v1/responses"),
                                                   ("anthropic", "/v1/messages"), ("gemini", "")])
@FUZZ
@given(line=st.fixed_dictionaries({}, optional={
    "custom_id": st.text(max_size=8) | json_values, "method": st.just("POST") | json_values,
    "url": st.sampled_from(["/v1/chat/completions", "/v1/responses"]) | json_values, "body": bodies | json_values,
    "params": bodies | json_values, "key": json_values, "request": bodies | json_values}), raw=st.binary(max_size=60))
def test_batch_line_parser_never_crashes(dialect: Any, endpoint: str, line: dict[str, Any], raw: bytes) -> None:
    for payload in (_encoded(line), raw):
        with contextlib.suppress(LineProblem):  # a LineProblem is the line's error in the batch's error file
            parse_line(dialect, endpoint, "m", payload)
