"""The mock provider's DeepSeek face: OpenAI's dialect, but text parts only, as DeepSeek's API."""

from __future__ import annotations

from typing import Any

import pytest

from shared.mock import MockSettings

pytestmark = pytest.mark.anyio

PATH = "/deepseek/v1/chat/completions"
PNG = "data:image/png;base64,iVBORw0KGgo="


async def test_text_parts_and_unknown_fields_are_taken(client_for: Any) -> None:
    messages = [{"role": "system", "content": [{"type": "text", "text": "Be brief."}]},
                {"role": "user", "content": [{"type": "text", "text": "Hello"}, {"type": "text", "text": "there"}]}]
    async with client_for(MockSettings(output_tokens=2)) as (client, _):
        reply = await client.post(PATH, json={"model": "deepseek-chat", "messages": messages,
                                              "stream_options": {"include_usage": True}, "cot_id": "x"})
    assert reply.status_code == 200, reply.text
    assert reply.json()["choices"][0]["message"]["content"].startswith("Hello")


@pytest.mark.parametrize("part", [{"type": "image_url", "image_url": {"url": PNG}},
                                  {"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBE"}}])
async def test_a_part_other_than_text_fails_the_whole_body(client_for: Any, part: dict[str, Any]) -> None:
    messages = [{"role": "user", "content": "first"}, {"role": "assistant", "content": "ok"},
                {"role": "user", "content": [{"type": "text", "text": "look"}, part]}]
    async with client_for(MockSettings()) as (client, _):
        reply = await client.post(PATH, json={"model": "deepseek-chat", "messages": messages})
    assert reply.status_code == 400
    error = reply.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["message"].endswith(f"messages[2]: unknown variant `{part['type']}`, expected `text`")
