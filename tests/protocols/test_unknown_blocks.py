"""A client block or part type with no counterpart is refused with a 400 naming it, in the
client's own protocol, never dropped (docs/compatibility.md, "content blocks with no counterpart")."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from api.dialects import DIALECTS
from shared.errors import GatewayError

CASES: list[tuple[str, dict[str, Any], str]] = [
    ("openai_chat", {"model": "m", "messages": [{"role": "user", "content": [
        {"type": "text", "text": "hi"}, {"type": "input_audio", "input_audio": {"data": "x", "format": "wav"}}]}]},
     "messages[0].content[1].type"),
    ("openai_responses", {"model": "m", "input": [{"role": "user", "content": [
        {"type": "input_text", "text": "hi"}, {"type": "input_audio", "data": "x"}]}]},
     "input[0].content[1].type"),
    ("anthropic_messages", {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": [
        {"type": "text", "text": "hi"}, {"type": "container_upload", "file_id": "x"}]}]},
     "messages[0].content[1].type"),
    ("anthropic_messages", {"model": "m", "max_tokens": 5, "messages": [
        {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "f", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": [
            {"type": "search_result", "source": "s", "title": "t", "content": []}]}]}]},
     "messages[1].content[0].content[0].type"),
    ("gemini", {"contents": [{"role": "user", "parts": [{"text": "hi"}, {"videoMetadata": {"fps": 1}}]}]},
     "contents[0].parts[1]"),
]


@pytest.mark.parametrize(("dialect", "body", "param"), CASES)
def test_unknown_block_is_a_400_naming_it(dialect: str, body: dict[str, Any], param: str) -> None:
    client = DIALECTS[dialect]
    with pytest.raises(GatewayError) as info:
        client.parse_request(orjson.dumps(body), "gemini-x", False)
    err = info.value
    assert err.status == 400 and err.param == param
    status, rendered, _ = client.render_error(err)
    assert status == 400 and param in rendered.decode()  # the client sees which field
