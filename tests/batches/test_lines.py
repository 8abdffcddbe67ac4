"""Batch input validation without a running system: every problem with its 1-based line number,
the configurable size limits, and the offsets index the feeder reads lines by."""

from __future__ import annotations

import json
from typing import Any

from shared.batches.lines import parse_line, validate
from shared.batches.records import job_id, line_jobs, parse_job_id
from shared.config import BatchSettings, Config, parse_config

CONFIG = parse_config("""
accounts: [{name: a, provider: mock, base_url: "http://127.0.0.1:9/v1"}]
models: [{name: m, route: [{account: a, model: x}]}]
""")


def line(custom_id: str, **body: Any) -> bytes:
    payload = {"model": "m", "messages": [{"role": "user", "content": "hi"}], **body}
    return json.dumps({"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions",
                       "body": payload}).encode() + b"\n"


def with_limits(**limits: Any) -> Config:
    return Config(accounts=CONFIG.accounts, models=CONFIG.models, batches=BatchSettings(**limits))


def test_errors_carry_the_line_number_the_client_sees() -> None:
    lines = [line("a"), b"\n", line("b", stream=True), line("c", temperature=9), line("a"),
             b'{"custom_id": "d", "method": "GET", "url": "/v1/chat/completions", "body": {}}\n']
    v = validate(lines, "openai", "/v1/chat/completions", "", CONFIG)
    got = [(e.line, e.code, e.param) for e in v.errors]
    assert got == [(3, "invalid_request", "body.stream"), (4, "invalid_request", "body.temperature"),
                   (5, "duplicate_custom_id", "custom_id"), (6, "invalid_method", "method")]
    assert v.total == 5  # the blank line is not a request


def test_size_limits_are_configurable() -> None:
    big = line("big", user="x" * 2000)
    v = validate([line("a"), big], "openai", "/v1/chat/completions", "", with_limits(max_line_bytes=1000))
    assert [(e.line, e.code) for e in v.errors] == [(2, "line_too_large")]
    v = validate([line(str(i)) for i in range(5)], "openai", "/v1/chat/completions", "",
                 with_limits(max_lines=4, max_bytes=300))
    assert [e.code for e in v.errors] == ["too_many_requests", "file_too_large"]
    assert all(e.line is None for e in v.errors)


def test_offsets_index_points_at_each_request() -> None:
    lines = [line("a"), b"\n", line("b"), line("c")]
    content = b"".join(lines)
    v = validate(lines, "openai", "/v1/chat/completions", "", CONFIG)
    starts = list(v.offsets)
    assert [parse_line("openai", "/v1/chat/completions", "", content[s:].split(b"\n", 1)[0]).custom_id
            for s in starts] == ["a", "b", "c"]


def test_anthropic_custom_ids_follow_anthropics_rule() -> None:
    params = {"model": "m", "max_tokens": 4, "messages": [{"role": "user", "content": "hi"}]}
    good = json.dumps({"custom_id": "ok_1-x", "params": params}).encode()
    bad = json.dumps({"custom_id": "not ok!", "params": params}).encode()
    v = validate([good, bad], "anthropic", "/v1/messages", "", CONFIG)
    assert [(e.line, e.code) for e in v.errors] == [(2, "invalid_custom_id")]


def test_a_responses_line_cannot_chain_from_a_stored_response() -> None:
    body = {"model": "m", "input": "hi", "previous_response_id": "resp_abc"}
    raw = json.dumps({"custom_id": "a", "method": "POST", "url": "/v1/responses", "body": body}).encode()
    v = validate([raw], "openai", "/v1/responses", "", CONFIG)
    assert [(e.line, e.code, e.param) for e in v.errors] == [(1, "invalid_request", "body.previous_response_id")]


EMBED_CONFIG = parse_config("""
accounts:
  - {name: a, provider: mock, base_url: "http://127.0.0.1:9/v1"}
  - {name: g, provider: gemini, api_key: k}
models:
  - {name: m, route: [{account: a, model: x}]}
  - {name: e, kind: embedding, route: [{account: a, model: x}]}
  - {name: text-only, kind: embedding, route: [{account: g, model: x}]}
""")


def embedding(custom_id: str, **body: Any) -> bytes:
    return json.dumps({"custom_id": custom_id, "method": "POST", "url": "/v1/embeddings",
                       "body": {"model": "e", "input": "hi", **body}}).encode() + b"\n"


def test_embedding_lines_are_checked_as_the_live_route_checks_them() -> None:
    lines = [embedding("a"), embedding("b", input=[[1, 2], [3]]), embedding("c", model="text-only", input=[[1, 2]]),
             embedding("d", dimensions=0), embedding("e", model="m"), line("f")]
    v = validate(lines, "openai", "/v1/embeddings", "", EMBED_CONFIG)
    got = [(e.line, e.code, e.param) for e in v.errors]
    assert got == [(3, "invalid_request", "body.input"), (4, "invalid_request", "body.dimensions"),
                   (5, "model_not_found", "body.model"), (6, "mismatched_url", "url")]
    assert "text only" in v.errors[0].message and "/v1/embeddings" in v.errors[3].message


def test_a_chat_line_may_not_name_an_embedding_model() -> None:
    v = validate([line("a", model="e")], "openai", "/v1/chat/completions", "", EMBED_CONFIG)
    assert [(e.line, e.code, e.param) for e in v.errors] == [(1, "model_not_found", "body.model")]


def test_job_ids_name_the_line_and_the_part() -> None:
    assert line_jobs("b1", 7, ["acct-a"]) == [("b1.7", "acct-a")]  # a line of one call: as a chat line
    split = line_jobs("b1", 7, ["acct-a", "acct-b", "acct-a"])
    assert split == [("b1.7.0", "acct-a"), ("b1.7.1", "acct-b"), ("b1.7.2", "acct-a")]
    assert [parse_job_id(j) for j, _ in [*line_jobs("b1", 7, ["x"]), *split]] == [
        ("b1", 7, 0), ("b1", 7, 0), ("b1", 7, 1), ("b1", 7, 2)]
    assert job_id("b1", 7, 2, 3) == "b1.7.2"


def test_file_id_documents_are_refused_in_lines() -> None:
    """A live request's `file_id` is resolved by the API; a batch line goes to a worker as it is,
    so it must carry the file inline."""
    chat = line("a", messages=[{"role": "user", "content": [{"type": "file", "file": {"file_id": "file-1"}}]}])
    v = validate([chat], "openai", "/v1/chat/completions", "", CONFIG)
    assert [(e.line, e.code, e.param) for e in v.errors] == [(1, "invalid_request", "body.file_id")]
    params = {"model": "m", "max_tokens": 4, "messages": [{"role": "user", "content": [
        {"type": "document", "source": {"type": "file", "file_id": "file-1"}}]}]}
    v = validate([json.dumps({"custom_id": "b", "params": params}).encode()], "anthropic", "", "", CONFIG)
    assert [(e.line, e.code, e.param) for e in v.errors] == [(1, "invalid_request", "file_id")]
